#!/usr/bin/env bash
# Every kernel of one training step with metrics on, timed by ncu, per model; writes the raw CSV
# and a summary by kernel name (scripts/kernel_summary.py) to $OUT (default /tmp).
#   bash scripts/profile_gpu.sh [build_dir] [gpt2|gpt2_headwise|llama ...]
# The step also runs the step-0 validation forward, so forward kernels count twice. A first run of
# the same step without ncu, in the same run folder, leaves run.gemm_search's choices there
# (train/io/gemm_choices_file.h), so that the profiled run multiplies with them and times no
# candidates (the search's runs would count as the step's GEMMs).
# BENCH_BATCH (32); PROFILE_SET ("a.b=v ...") adds --set overrides.
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-gpu}; shift || true
models=("$@"); [ ${#models[@]} -eq 0 ] && models=(gpt2_headwise llama)
out=${OUT:-/tmp}
command -v ncu > /dev/null || { echo "profile_gpu.sh: ncu is not installed"; exit 1; }
[ -f data/bench/train_000000.bin ] || python3 scripts/make_bench_data.py data/bench --vocab 50304 --tokens 4000000
status=0
for model in "${models[@]}"; do
  sets=(--set train.batch_size="${BENCH_BATCH:-32}" --set train.steps=1 --set metrics.every=1
        --set metrics.rank_sequences=0 --set run.name="profile_$model")
  case $model in
    gpt2) config=configs/bench/gpt2_124m.yaml ;;
    gpt2_headwise) config=configs/bench/gpt2_124m.yaml; sets+=(--set model.attn_output_norm=headwise_rmsnorm) ;;
    llama) config=configs/bench/llama_152m.yaml ;;
    *) echo "profile_gpu.sh: model '$model' is not gpt2, gpt2_headwise or llama"; exit 2 ;;
  esac
  for s in ${PROFILE_SET:-}; do sets+=(--set "$s"); done
  echo "== $model"
  "$build/sinklab" train "$config" --no-progress "${sets[@]}" > "$out/choices_$model.log" 2>&1 ||
    { tail -5 "$out/choices_$model.log"; status=1; continue; }
  timeout 400 ncu --csv --metrics gpu__time_duration.sum --clock-control none --cache-control none \
    "$build/sinklab" train "$config" --no-progress "${sets[@]}" > "$out/ncu_$model.csv" \
    2> "$out/ncu_$model.err" || { tail -5 "$out/ncu_$model.err"; status=1; }
  python3 scripts/kernel_summary.py 1 60 < "$out/ncu_$model.csv" | tee "$out/kernels_$model.txt" | head -45
  xz -f "$out/ncu_$model.csv" 2> /dev/null || true
done
exit $status
