#!/usr/bin/env bash
# On the GPU machine, in one call: configure for sm_90, build with every core, run the [cuda]
# tests, the PyTorch cross-check on the GPU, and (when present) the GPU benchmark.
#   bash scripts/gpu_check.sh [catch filter, default [cuda]]
# Env: SKIP_BENCH=1, BENCH_MODEL=gpt2|llama, BENCH_PROFILE=1, BENCH_ATTENTION=1 (attention alone
# against PyTorch's SDPA, scripts/bench_attention.sh), TEST_TIMEOUT (s), and bench_gpu.sh's.
set -uo pipefail
cd "$(dirname "$0")/.."
build=${SINKLAB_BUILD_DIR:-build-gpu}
out=${OUT:-/tmp}
# PCRE2's header where the machine lacks it (scripts/pcre2_for_device.sh, carried as .pcre2)
[ -d .pcre2/lib/pkgconfig ] && export PKG_CONFIG_PATH=$PWD/.pcre2/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
nvidia-smi --query-gpu=name,memory.used,memory.total,clocks.sm --format=csv,noheader || true
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \
  > "$out/configure.log" 2>&1 || { tail -30 "$out/configure.log"; exit 1; }
cmake --build "$build" -j "$(nproc)" > "$out/build.log" 2>&1 || { grep -E "error" -A3 "$out/build.log" | head -60; exit 1; }
echo "== [cuda] tests"
timeout "${TEST_TIMEOUT:-600}" "$build/tests/sinklab_tests" "${1:-[cuda]}" --durations yes \
  > "$out/cuda_tests.log" 2>&1
status=$?
grep -E "FAILED|REQUIRE|with expansion|passed|failed" -A2 "$out/cuda_tests.log" | tail -40
if [ -n "${BENCH_ATTENTION:-}" ]; then  # attention alone against PyTorch's SDPA
  echo "== attention"
  bash scripts/bench_attention.sh "$build" 2>&1 | tee "$out/bench_attention.log"
fi
if [ -x scripts/bench_gpu.sh ] && [ -z "${SKIP_BENCH:-}" ]; then
  echo "== benchmark"
  bash scripts/bench_gpu.sh "$build" "${BENCH_MODEL:-gpt2}" 2>&1 | tee "$out/bench.log" | tail -40
fi
exit $status
