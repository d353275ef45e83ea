#!/usr/bin/env bash
# Data-parallel scaling on one node: GPT-2 124M (configs/bench/gpt2_124m.yaml, random tokens) on
# 1 GPU, then on N GPUs as N ranks (torchrun-style variables, NCCL), with the same batch per GPU
# (B=32, T=1024: weak scaling; the global batch grows with N). Prints tokens/s of both (median
# of steps 4+, rank 0's log) and the efficiency N-GPU tok/s / (N x 1-GPU tok/s); target >= 0.90.
#   bash scripts/bench_scaling.sh [build_dir] [N]
#   BENCH_STEPS (20), BENCH_METRICS (0: metrics off; 1: every step)
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-gpu}
n=${2:-2}
steps=${BENCH_STEPS:-20}
every=${BENCH_METRICS:-0}
out=${OUT:-/tmp}
export NCCL_NVLS_ENABLE=0  # NVLink multicast stays off on shared hosts
gpus=$(nvidia-smi -L 2>/dev/null | wc -l)
[ "$gpus" -ge "$n" ] || { echo "bench_scaling.sh: $n GPUs asked, $gpus visible"; exit 2; }
[ -f data/bench/train_000000.bin ] || python3 scripts/make_bench_data.py data/bench --vocab 50304 --tokens 4000000
config=configs/bench/gpt2_124m.yaml
median_tok_s() {  # median tokens/s of the steps after the first three, from metrics.jsonl
  python3 - "$1" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
v = sorted(r["tokens_per_s"] for r in rows[3:] if r.get("tokens_per_s"))
print(f"{v[len(v)//2]:.0f}" if v else "nan")
PY
}
common=(--no-progress --set train.steps="$steps" --set metrics.every="$every")
"$build/sinklab" train "$config" "${common[@]}" --set run.name=scale_1 > "$out/scale_1.log" 2>&1 ||
  { tail -20 "$out/scale_1.log"; exit 1; }
one=$(median_tok_s runs/scale_1/main/metrics.jsonl)
port=$((29000 + RANDOM % 1000))
vars=(WORLD_SIZE="$n" MASTER_ADDR=127.0.0.1 MASTER_PORT="$port")
many_args=("${common[@]}" --set run.name=scale_$n --set train.tokens_per_step=$((n * 32768)))
for ((r = 1; r < n; ++r)); do
  env RANK=$r LOCAL_RANK=$r "${vars[@]}" "$build/sinklab" train "$config" "${many_args[@]}" \
    > "$out/scale_${n}_rank$r.log" 2>&1 &
done
env RANK=0 LOCAL_RANK=0 "${vars[@]}" "$build/sinklab" train "$config" "${many_args[@]}" \
  > "$out/scale_$n.log" 2>&1
status=$?
wait
[ $status -eq 0 ] || { tail -20 "$out/scale_$n.log"; exit 1; }
many=$(median_tok_s "runs/scale_$n/main/metrics.jsonl")
python3 - "$one" "$many" "$n" "$every" <<'PY'
import sys
one, many, n, every = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
print(f"GPT-2 124M, B=32 per GPU, T=1024, metrics every {every} step(s) (0 = off)")
print(f"  1 GPU     {one:10.0f} tok/s")
print(f"  {n} GPUs    {many:10.0f} tok/s")
print(f"  scaling efficiency = {many / (n * one):.3f}  (target >= 0.90)")
PY
