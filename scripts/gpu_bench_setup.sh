# Sourced by the GPU machine's short check and benchmark scripts (check_sigmoid_release.sh,
# bench_sigmoid_metrics.sh) from the repository root:
#   gpu_bench_setup BUILD_DIR OUT_DIR
# puts the carried PCRE2 (.pcre2, scripts/pcre2_for_device.sh) on PKG_CONFIG_PATH, prints the
# card, builds BUILD_DIR/sinklab (only that target) when it is missing, with its logs in OUT_DIR,
# and makes the random-token data of data/bench when it is missing. Returns 1 when the build fails.
gpu_bench_setup() {
  local build=$1 out=$2
  [ -d .pcre2/lib/pkgconfig ] &&
    export PKG_CONFIG_PATH=$PWD/.pcre2/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
  nvidia-smi --query-gpu=name --format=csv,noheader || true
  if [ ! -x "$build/sinklab" ]; then
    cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \
      > "$out/configure.log" 2>&1 && cmake --build "$build" -j "$(nproc)" --target sinklab \
      > "$out/build.log" 2>&1 || { tail -30 "$out/build.log" "$out/configure.log" 2>/dev/null; return 1; }
  fi
  [ -f data/bench/train_000000.bin ] ||
    python3 scripts/make_bench_data.py data/bench --vocab 50304 --tokens 4000000 > /dev/null
}
