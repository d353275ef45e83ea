#!/usr/bin/env bash
# On the GPU machine: what sigmoid attention's sink metrics cost at the paper's 152M shape
# (configs/bench/llama_152m.yaml with model.attention: sigmoid, random tokens, micro-batch 32,
# metrics every step), with the row sums from a second attention over values of ones
# (run.sigmoid_row_sums: false) and from the training forward (true), then without metrics.
# Prints each run's step lines and the mean step time over its steps after the second (the
# first ones carry one-time costs); the sink figures of the two metrics runs should agree.
# About 60 s after the build (carry .pcre2).
#   bash scripts/bench_sigmoid_metrics.sh [build dir, default build-gpu] [steps, default 8]
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-gpu}
steps=${2:-8}
out=${OUT:-/tmp}
source scripts/gpu_bench_setup.sh
gpu_bench_setup "$build" "$out" || exit 1
status=0
for setting in "row_sums_false|metrics.every=1|run.sigmoid_row_sums=false" \
               "row_sums_true|metrics.every=1|run.sigmoid_row_sums=true" \
               "no_metrics|metrics.every=0|run.sigmoid_row_sums=false"; do
  IFS='|' read -r name metrics row_sums <<< "$setting"
  "$build/sinklab" train configs/bench/llama_152m.yaml --no-progress \
    --set model.attention=sigmoid --set model.attn_output_norm=none --set train.steps="$steps" \
    --set run.name="sigmoid_$name" --set "$metrics" --set "$row_sums" \
    > "$out/sigmoid_$name.log" 2>&1 || status=1
  echo "== $name ($metrics, $row_sums)"
  grep -E "^step|skipped" "$out/sigmoid_$name.log" | cut -c1-170
  grep -E "^step" "$out/sigmoid_$name.log" | grep -v "val loss" | awk -F'|' 'NR > 2 { split($6, a, " "); s += a[1]; n++ }
    END { if (n) printf "mean step after the second: %.1f ms over %d steps\n", s / n, n }'
  grep -q "update skipped" "$out/sigmoid_$name.log" && status=1
done
exit $status
