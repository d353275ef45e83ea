#!/usr/bin/env bash
# On the GPU machine: the 152M shape's three variants (configs/bench/llama152m_three_variants.yaml,
# random tokens, micro-batch 32, metrics every 2nd step) for 6 steps with
# run.release_forward_inputs true, then false, printing the sigmoid variant's step lines and any
# skipped update. The twenty-fifth session saw NaN gradient norms on sigmoid's metrics steps
# after the first, in a tree with release on and a since-withdrawn change to the sigmoid row sums
# (docs/PERFORMANCE.md, plan item 0): this tells whether release alone does it. About 110 s with
# the build (carry .pcre2). On an H200 (twenty-seventh session) it did not: the same finite bits
# both ways, so release is on by default again.
#   bash scripts/check_sigmoid_release.sh [build dir, default build-gpu]
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-gpu}
out=${OUT:-/tmp}
source scripts/gpu_bench_setup.sh
gpu_bench_setup "$build" "$out" || exit 1
status=0
for release in true false; do
  "$build/sinklab" compare configs/bench/llama152m_three_variants.yaml --no-progress \
    --set train.batch_size=32 --set train.steps=6 --set run.name=sigmoid_release_$release \
    --set run.release_forward_inputs=$release > "$out/sigmoid_release_$release.log" 2>&1 || status=1
  echo "== run.release_forward_inputs=$release"
  grep -E "^step .*\| sigmoid|skipped" "$out/sigmoid_release_$release.log" | cut -c1-150
  grep -q "update skipped" "$out/sigmoid_release_$release.log" && status=1
done
exit $status
