#!/usr/bin/env bash
# Where a metrics step's GPU time goes across streams: runs a few GPT-2 (or LLaMA) training steps
# with metrics every step under nsys and prints, for the last step, the busy time of each stream,
# their overlap, and the idle time of the GPU (scripts/timeline_summary.py).
#   bash scripts/timeline_gpu.sh [build_dir] [gpt2|llama]     (needs nsys; writes under $OUT)
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-gpu}
model=${2:-gpt2}
out=${OUT:-/tmp}
case $model in
  gpt2) config=configs/bench/gpt2_124m.yaml ;;
  llama) config=configs/bench/llama_152m.yaml ;;
  *) echo "timeline_gpu.sh: model '$model' is not gpt2 or llama"; exit 2 ;;
esac
command -v nsys > /dev/null || { echo "timeline_gpu.sh: nsys is not installed"; exit 1; }
[ -f data/bench/train_000000.bin ] || python3 scripts/make_bench_data.py data/bench --vocab 50304 --tokens 4000000
nsys profile -t cuda -o "$out/timeline_$model" --force-overwrite true \
  "$build/sinklab" train "$config" --no-progress --set train.batch_size="${BENCH_BATCH:-32}" \
  --set train.steps=4 --set metrics.every=1 --set run.name=bench_timeline > "$out/timeline.log" 2>&1 \
  || { tail -20 "$out/timeline.log"; exit 1; }
nsys stats --report cuda_gpu_trace --format csv --output "$out/timeline_$model" \
  "$out/timeline_$model.nsys-rep" > /dev/null 2>&1
python3 scripts/timeline_summary.py "$out/timeline_${model}_cuda_gpu_trace.csv"
