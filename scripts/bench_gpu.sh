#!/usr/bin/env bash
# Training throughput of sinklab vs PyTorch (eager and torch.compile) on the same GPU, same
# model, in one call. GPT-2 124M (12 x 768, T=1024, V=50304, B=32 unless BENCH_BATCH is set).
#   bash scripts/bench_gpu.sh [build_dir]
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-gpu}
batch=${BENCH_BATCH:-32}
steps=${BENCH_STEPS:-12}
python3 scripts/make_bench_data.py data/bench --vocab 50304 --tokens 4000000
median_tok_s() {  # median tokens/s of the steps after the first three, from metrics.jsonl
  python3 - "$1" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
v = sorted(r["tokens_per_s"] for r in rows[3:] if r.get("tokens_per_s"))
print(f"{v[len(v)//2]:.0f}" if v else "nan")
PY
}
declare -A result
for metrics in 0 1; do
  "$build/sinklab" train configs/bench/gpt2_124m.yaml --no-progress \
    --set train.batch_size="$batch" --set train.steps="$steps" --set metrics.every=$metrics \
    --set run.name=bench_m$metrics > "${OUT:-/tmp}/sinklab_m$metrics.log" 2>&1 \
    || { tail -20 "${OUT:-/tmp}/sinklab_m$metrics.log"; }
  result[sinklab_m$metrics]=$(median_tok_s runs/bench_m$metrics/main/metrics.jsonl 2>/dev/null || echo nan)
done
for mode in "" "--compile"; do
  for dtype in bf16 fp32; do
    line=$(python3 scripts/bench_torch.py --batch "$batch" --steps "$steps" --dtype $dtype $mode 2>&1 | tail -1)
    echo "$line"
    result["torch${mode}_$dtype"]=$(echo "$line" | awk '{print $5}')
  done
done
python3 - "${result[sinklab_m0]}" "${result[sinklab_m1]}" "${result[torch_bf16]}" "${result[torch_fp32]}" \
  "${result[torch--compile_bf16]}" "${result[torch--compile_fp32]}" "$batch" <<'PY'
import sys
m0, m1, eb, ef, cb, cf = (float(x) if x not in ("", "nan") else float("nan") for x in sys.argv[1:7])
print(f"GPT-2 124M, B={sys.argv[7]}, T=1024, one H200 (tokens/s, median of steps 4+)")
print(f"  sinklab fp32, metrics off   {m0:>10.0f}")
print(f"  sinklab fp32, metrics every {m1:>10.0f}   (metrics cost {100 * (m0 / m1 - 1):.1f}%)")
for name, v in (("torch eager bf16", eb), ("torch eager fp32", ef), ("torch compile bf16", cb), ("torch compile fp32", cf)):
    print(f"  {name:<27} {v:>10.0f}   sinklab/torch = {m0 / v:.3f}")
PY
