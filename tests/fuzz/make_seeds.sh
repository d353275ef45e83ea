#!/usr/bin/env bash
# Writes the binary seeds of the fuzz corpus, which are generated rather than kept in git:
# token shards (a uint16 llm.c shard, a uint32 one, a headerless nanoGPT stream), and a real
# checkpoint and TensorBoard events file of a 1-layer LLaMA trained for 2 steps by the given
# sinklab binary.
#   bash tests/fuzz/make_seeds.sh OUT_DIR SINKLAB_BINARY
# Writes OUT_DIR/shard/, OUT_DIR/checkpoint/ and OUT_DIR/events/.
set -euo pipefail
out=${1:?usage: make_seeds.sh OUT_DIR SINKLAB_BINARY}
sinklab=${2:?usage: make_seeds.sh OUT_DIR SINKLAB_BINARY}
cd "$(dirname "$0")/../.."
mkdir -p "$out/shard" "$out/checkpoint" "$out/events" "$out/work"
python3 - "$out/shard" <<'PY'
import struct, sys
d = sys.argv[1]
def shard(name, version, fmt, tokens):
    header = [0] * 256
    header[0], header[1], header[2] = 20240520, version, len(tokens)
    with open(f"{d}/{name}", "wb") as f:
        f.write(struct.pack("<256i", *header) + struct.pack(f"<{len(tokens)}{fmt}", *tokens))
shard("u16_12.bin", 1, "H", [5, 0, 65535, 7, 7, 1, 2, 3, 4, 300, 9, 10])
shard("u32_5.bin", 2, "I", [1, 70000, 3, 65536, 0])
open(f"{d}/raw_4.bin", "wb").write(struct.pack("<4H", 1, 2, 3, 4))
PY
python3 scripts/make_bench_data.py "$out/work/data" --vocab 256 --tokens 4000 > /dev/null
cat > "$out/work/seed.yaml" <<YAML
run: {name: seed, out_dir: $out/work/runs, device: cpu, seed: 3}
model: {arch: llama, n_layer: 1, n_head: 2, n_embd: 16, block_size: 8, vocab_size: 0}
data: {dir: $out/work/data, tokenizer: byte}
train: {steps: 2, batch_size: 2, eval_every: 0, eval_batches: 1, sample_tokens: 0, log_every: 1}
checkpoint: {every: 2}
YAML
# The sanitizer build's own exit-time leak report is not what this run is for.
ASAN_OPTIONS=detect_leaks=0 OMP_NUM_THREADS=1 "$sinklab" train "$out/work/seed.yaml" \
  --no-progress > "$out/work/train.log" 2>&1 || { cat "$out/work/train.log"; exit 1; }
cp "$out/work/runs/seed/main/ckpt/step_00000002.h5" "$out/checkpoint/llama_1x16.h5"
cp "$out"/work/runs/seed/main/events.out.tfevents.*.sinklab "$out/events/llama_1x16.tfevents"
