#!/usr/bin/env bash
# CPU training throughput of sinklab against PyTorch (Debian's python3-torch, fp32), the same
# model, batch, vocabulary and optimizer, in one call; prints tokens/s of both and the ratio.
# Random tokens: speed only.
#   bash scripts/bench_cpu.sh [build_dir]        (default build/; scripts/run.sh builds it)
# Model: GPT-2 of 4 layers x 256 (4 heads), T=256, B=8, V=512 (configs/bench/gpt2_cpu.yaml;
# bench_torch.py --device cpu builds the same one), AdamW, grad clip 1.0, metrics off.
#   BENCH_STEPS (20): steps per run; the median tokens/s of the steps after BENCH_WARMUP (5).
#   BENCH_ROUNDS (3): sinklab and PyTorch alternate this many times (a shared machine's load
#     moves both); the figures are the medians over the rounds.
#   BENCH_THREADS (every core): threads of both: OMP_NUM_THREADS and OPENBLAS_NUM_THREADS (torch
#     multiplies on OpenBLAS's own threads; sinklab calls OpenBLAS from its OpenMP threads).
#   PYTHON: an interpreter with torch (default: python3, else /usr/bin/python3, Debian's).
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
steps=${BENCH_STEPS:-20}
warmup=${BENCH_WARMUP:-5}
rounds=${BENCH_ROUNDS:-3}
threads=${BENCH_THREADS:-$(nproc)}
out=${OUT:-/tmp}
config=configs/bench/gpt2_cpu.yaml
export OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads
model_args=(--arch gpt2 --n_layer 4 --n_head 4 --n_embd 256 --block 256 --batch 8 --vocab 512)

python=${PYTHON:-}
for candidate in python3 /usr/bin/python3; do
  [ -n "$python" ] && break
  "$candidate" -c "import torch" 2>/dev/null && python=$candidate
done
[ -n "$python" ] || { echo "bench_cpu.sh: no Python with torch (apt-get install python3-torch)"; exit 2; }
[ -x "$build/sinklab" ] || { echo "bench_cpu.sh: no $build/sinklab (build first)"; exit 2; }
[ -f data/bench_cpu/train_000000.bin ] ||
  python3 scripts/make_bench_data.py data/bench_cpu --vocab 512 --tokens 400000 > /dev/null

sinklab_tok_s() {  # one sinklab run; prints the median tokens/s after the warm-up steps
  "$build/sinklab" train "$config" --no-progress \
    --set train.steps="$steps" --set run.name=bench_cpu > "$out/sinklab_bench_cpu.log" 2>&1 ||
    { tail -20 "$out/sinklab_bench_cpu.log" >&2; echo nan; return; }
  python3 - runs/bench_cpu/main/metrics.jsonl "$warmup" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])][int(sys.argv[2]):]
v = sorted(r["tokens_per_s"] for r in rows if r.get("tokens_per_s"))
print(f"{v[len(v)//2]:.0f}" if v else "nan")
PY
}
torch_tok_s() {  # one PyTorch run, same shape; prints its tokens/s
  "$python" scripts/bench_torch.py --device cpu --dtype fp32 "${model_args[@]}" \
    --steps "$steps" --warmup "$warmup" --threads "$threads" 2>&1 |
    awk '$4 == "tok/s" {print $5; found=1} END {if (!found) print "nan"}'
}

s_all=() t_all=()
for round in $(seq "$rounds"); do
  s=$(sinklab_tok_s)
  t=$(torch_tok_s)
  s_all+=("$s") t_all+=("$t")
  echo "round $round: sinklab $s tok/s, torch $t tok/s"
done
grep -m1 "^CPU matmuls" "$out/sinklab_bench_cpu.log" || true
torch_version=$("$python" -c "import torch; print(torch.__version__)")
python3 - "$threads" "$torch_version" "${#s_all[@]}" "${s_all[@]}" "${t_all[@]}" <<'PY'
import math, statistics, sys
threads, version, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
vals = [float(x) if x not in ("", "nan") else math.nan for x in sys.argv[4:]]
s, t = statistics.median(vals[:n]), statistics.median(vals[n:])
print(f"GPT-2 4x256, T=256, B=8, V=512, fp32, AdamW, {threads} threads; median over {n} rounds")
print(f"sinklab {s:.0f} tok/s   torch {version} {t:.0f} tok/s   ratio {s / t:.3f}x")
PY
