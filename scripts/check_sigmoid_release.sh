#!/usr/bin/env bash
# On the GPU machine: the 152M shape's three variants (configs/bench/llama152m_three_variants.yaml,
# random tokens, micro-batch 32, metrics every 2nd step) for 6 steps with
# run.release_forward_inputs true, then false, printing the sigmoid variant's step lines and any
# skipped update. The twenty-fifth session saw NaN gradient norms on sigmoid's metrics steps
# after the first, in a tree with release on and a since-withdrawn change to the sigmoid row sums
# (docs/PERFORMANCE.md, plan item 0): this tells whether release alone does it. About 110 s with
# the build (carry .pcre2).
#   bash scripts/check_sigmoid_release.sh [build dir, default build-gpu]
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-gpu}
out=${OUT:-/tmp}
[ -d .pcre2/lib/pkgconfig ] && export PKG_CONFIG_PATH=$PWD/.pcre2/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
nvidia-smi --query-gpu=name --format=csv,noheader || true
if [ ! -x "$build/sinklab" ]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \
    > "$out/configure.log" 2>&1 && cmake --build "$build" -j "$(nproc)" --target sinklab \
    > "$out/build.log" 2>&1 || { tail -30 "$out/build.log" "$out/configure.log" 2>/dev/null; exit 1; }
fi
[ -d data/bench ] || python3 scripts/make_bench_data.py data/bench --vocab 50304 --tokens 1000000 > /dev/null
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
