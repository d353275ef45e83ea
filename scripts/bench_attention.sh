#!/usr/bin/env bash
# On the GPU machine: causal attention alone at GPT-2 124M's shapes (B=32, T=1024, 12 heads of
# 64), sinklab's kernels on GPT-2's packed bf16 qkv against PyTorch's SDPA (its default backend,
# then FlashAttention-2), in one call; prints each and the ratios (PyTorch's time over sinklab's:
# above 1, sinklab is faster). Build first (scripts/gpu_check.sh does).
#   bash scripts/bench_attention.sh [build dir, default build-gpu]
# Env: BENCH_BATCH, BENCH_SEQ, BENCH_HEADS, BENCH_HEAD_SIZE, BENCH_ITERS; BENCH_SDPA_BACKENDS
# ("default flash").
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-gpu}
shape=(--batch "${BENCH_BATCH:-32}" --seq "${BENCH_SEQ:-1024}" --heads "${BENCH_HEADS:-12}"
       --head-size "${BENCH_HEAD_SIZE:-64}" --iters "${BENCH_ITERS:-20}")
# BENCH_KERNELS: sinklab's kernels ("own") or cuDNN's fused attention ("auto").
ours=$("$build/sinklab" bench-attention "${shape[@]}" --device cuda --precision bf16 \
       --kernels "${BENCH_KERNELS:-own}") || exit 1
echo "$ours"
for backend in ${BENCH_SDPA_BACKENDS-default flash}; do
  theirs=$(python3 scripts/bench_sdpa.py "${shape[@]}" --backend "$backend" 2>&1 | tail -1)
  echo "$theirs"
  python3 - "$ours" "$theirs" <<'PY'
import re, sys
def times(line):
    found = dict(re.findall(r"(forward_ms|backward_ms) ([0-9.]+)", line))
    return float(found.get("forward_ms", "nan")), float(found.get("backward_ms", "nan"))
(of, ob), (tf, tb) = times(sys.argv[1]), times(sys.argv[2])
name = sys.argv[2].split(" bf16")[0]
print(f"  {name} / sinklab time: forward {tf / of:.3f}, backward {tb / ob:.3f}, "
      f"both {(tf + tb) / (of + ob):.3f}")
PY
done
