#!/usr/bin/env bash
# Data-parallel scaling on one node: a model on 1 GPU, then on N GPUs as N ranks (torchrun-style
# variables, NCCL), with the same batch per GPU (B=32, T=1024: weak scaling; the global batch
# grows with N). Prints tokens/s of each (median of steps 4+, rank 0's log) and the efficiency
# N-GPU tok/s / (N x 1-GPU tok/s); issue 21's target is >= 0.90 at 8 GPUs.
#   bash scripts/bench_scaling.sh [build_dir] [N list, e.g. "2" or "2 4 8"] [model]
#     model: gpt2 (GPT-2 124M, configs/bench/gpt2_124m.yaml; the default) | llama (the paper's
#     LLaMA-style 152M with head-wise RMSNorm, configs/bench/llama_152m.yaml) | both
#   BENCH_STEPS (20), BENCH_METRICS (1: the sink metrics every step, as the paper's runs; 0: off)
#   BENCH_SET ("a.b=v c.d=w"): --set overrides for every run (e.g. "run.bucket_mib=50")
#   BENCH_DEVICE (cuda): cpu runs the same launch over TCP on CPU processes (a smoke test of the
#   script on a machine without GPUs; pair it with small shapes in BENCH_SET)
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-gpu}
counts=${2:-2}
model=${3:-gpt2}
steps=${BENCH_STEPS:-20}
every=${BENCH_METRICS:-1}
device=${BENCH_DEVICE:-cuda}
out=${OUT:-/tmp}
export NCCL_NVLS_ENABLE=0  # NVLink multicast stays off on shared hosts
if [ "$model" = both ]; then
  status=0
  for m in gpt2 llama; do bash scripts/bench_scaling.sh "$build" "$counts" "$m" || status=1; done
  exit $status
fi
case $model in
  gpt2) config=configs/bench/gpt2_124m.yaml; title="GPT-2 124M" ;;
  llama) config=configs/bench/llama_152m.yaml; title="LLaMA-style 152M, head-wise RMSNorm" ;;
  *) echo "bench_scaling.sh: model '$model' is not gpt2, llama or both"; exit 2 ;;
esac
largest=0
for n in $counts; do [ "$n" -gt "$largest" ] && largest=$n; done
if [ "$device" = cuda ]; then
  gpus=$(nvidia-smi -L 2>/dev/null | wc -l)
  [ "$gpus" -ge "$largest" ] || { echo "bench_scaling.sh: $largest GPUs asked, $gpus visible"; exit 2; }
fi
[ -f data/bench/train_000000.bin ] || python3 scripts/make_bench_data.py data/bench --vocab 50304 --tokens 4000000
median_tok_s() {  # median tokens/s of the steps after the first three, from metrics.jsonl
  python3 - "$1" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
v = sorted(r["tokens_per_s"] for r in rows[3:] if r.get("tokens_per_s"))
print(f"{v[len(v)//2]:.0f}" if v else "nan")
PY
}
# run.gemm_search is off with several processes (each rank would choose its own algorithms):
# the 1-GPU run goes without it too, so that the efficiency compares the same products.
common=(--no-progress --set train.steps="$steps" --set metrics.every="$every" --set run.device="$device"
        --set run.gemm_search=0)
for s in ${BENCH_SET:-}; do common+=(--set "$s"); done
name=scale_${model}
"$build/sinklab" train "$config" "${common[@]}" --set run.name="${name}_1" > "$out/${name}_1.log" 2>&1 ||
  { tail -20 "$out/${name}_1.log"; exit 1; }
one=$(median_tok_s "runs/${name}_1/main/metrics.jsonl")
# The 1-GPU run's tokens per step (its header), each rank's share in the N-rank runs.
per_rank=$(sed -n 's/.* \([0-9,]*\) tokens\/step.*/\1/p' "$out/${name}_1.log" | head -1 | tr -d ,)
[ -n "$per_rank" ] || { echo "bench_scaling.sh: no tokens/step in $out/${name}_1.log"; exit 1; }
echo "$title, $per_rank tokens per GPU per step, metrics every $every step(s) (0 = off), $device"
echo "  1 GPU     $one tok/s"
status=0
for n in $counts; do
  [ "$n" -gt 1 ] || continue
  port=$((29000 + RANDOM % 1000))
  vars=(WORLD_SIZE="$n" MASTER_ADDR=127.0.0.1 MASTER_PORT="$port")
  many_args=("${common[@]}" --set run.name="${name}_$n" --set train.tokens_per_step=$((n * per_rank)))
  for ((r = 1; r < n; ++r)); do
    env RANK=$r LOCAL_RANK=$r "${vars[@]}" "$build/sinklab" train "$config" "${many_args[@]}" \
      > "$out/${name}_${n}_rank$r.log" 2>&1 &
  done
  env RANK=0 LOCAL_RANK=0 "${vars[@]}" "$build/sinklab" train "$config" "${many_args[@]}" \
    > "$out/${name}_$n.log" 2>&1
  rc=$?
  wait
  if [ $rc -ne 0 ]; then tail -20 "$out/${name}_$n.log"; status=1; continue; fi
  many=$(median_tok_s "runs/${name}_$n/main/metrics.jsonl")
  python3 -c "import sys; one, many, n = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]);
print(f'  {n} GPUs    {many:.0f} tok/s, scaling efficiency {many / (n * one):.3f}')" "$one" "$many" "$n"
done
exit $status
