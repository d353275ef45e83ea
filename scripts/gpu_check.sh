#!/usr/bin/env bash
# On the GPU machine, in one call: configure for sm_90, build with every core, run the [cuda]
# tests, the PyTorch cross-check on the GPU, and (when present) the GPU benchmark.
#   bash scripts/gpu_check.sh [extra ctest/catch filter]
set -uo pipefail
cd "$(dirname "$0")/.."
build=${SINKLAB_BUILD_DIR:-build-gpu}
out=${OUT:-/tmp}
nvidia-smi --query-gpu=name,memory.used,memory.total,clocks.sm --format=csv,noheader || true
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \
  > "$out/configure.log" 2>&1 || { tail -30 "$out/configure.log"; exit 1; }
cmake --build "$build" -j "$(nproc)" > "$out/build.log" 2>&1 || { grep -E "error" -A3 "$out/build.log" | head -60; exit 1; }
echo "== [cuda] tests"
"$build/tests/sinklab_tests" "${1:-[cuda]}" 2>&1 | tee "$out/cuda_tests.log" | tail -40
status=${PIPESTATUS[0]}
if [ -x scripts/bench_gpu.sh ] && [ -z "${SKIP_BENCH:-}" ]; then
  echo "== benchmark"
  bash scripts/bench_gpu.sh "$build" 2>&1 | tee "$out/bench.log" | tail -30
fi
exit $status
