#!/usr/bin/env bash
# Fuzzes the readers of untrusted files with libFuzzer: builds the targets with clang (AddressSanitizer
# and UndefinedBehaviorSanitizer, no CUDA) in build-fuzz/, then runs each over its corpus for
# SECONDS (default 180): the YAML config reader, the token shard reader, the tokenizer file
# reader, the checkpoint reader and the TensorBoard events reader. Each target's corpus runs
# first: its text seeds and the text inputs that once crashed (tests/fuzz/corpus/<target>/), and
# binary seeds generated here by tests/fuzz/make_seeds.sh (shards, a checkpoint, an events file:
# binaries are not kept in git).
#   bash scripts/fuzz.sh [SECONDS]
# A crash, a sanitizer report, a hang (over 10 s) or an escaped non-sinklab exception fails the
# run; the input is kept in build-fuzz/artifacts/<target>/ (a text input joins the corpus once
# fixed; a binary one gets a test that writes it, or a seed generator in make_seeds.sh).
# Exit 77 (ctest: skipped) when clang++ or libFuzzer is missing; on CI (CI=true) that fails.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-180}
build=${SINKLAB_FUZZ_BUILD_DIR:-build-fuzz}
missing() {
  if [ "${CI:-}" = true ]; then echo "fuzz: FAIL on CI: $*" >&2; exit 1; fi
  echo "fuzz: skipped: $*"
  exit 77
}
command -v clang++ >/dev/null || missing "no clang++ (apt-get install clang libclang-rt-dev libomp-dev)"
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
printf 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }\n' \
  > "$probe/p.cpp"
clang++ -fsanitize=fuzzer "$probe/p.cpp" -o "$probe/p" 2>/dev/null ||
  missing "clang++ has no libFuzzer (apt-get install libclang-rt-dev)"

CC=clang CXX=clang++ cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DSINKLAB_CUDA=OFF -DSINKLAB_TESTS=OFF -DSINKLAB_FUZZ=ON > "$probe/configure.log" 2>&1 ||
  { tail -20 "$probe/configure.log"; exit 1; }
targets=(config shard tokenizer checkpoint events)
cmake --build "$build" -j "$(nproc)" --target "${targets[@]/#/fuzz_}" sinklab \
  > "$probe/build.log" 2>&1 || { grep -E "error" -A3 "$probe/build.log" | head -40; exit 1; }
# Binary seeds (shards, a checkpoint, an events file) are generated, not kept in git.
bash tests/fuzz/make_seeds.sh "$probe/seeds" "$build/sinklab"

# Leaks inside libhdf5's own error paths are not ours (tests/fuzz/lsan.supp says which).
export LSAN_OPTIONS="suppressions=$PWD/tests/fuzz/lsan.supp:print_suppressions=0"
status=0
for t in "${targets[@]}"; do
  work="$probe/corpus_$t"        # new inputs go here, not into the repository
  artifacts="$build/artifacts/$t"
  mkdir -p "$work" "$artifacts"
  corpora=("$work")
  for dir in "$probe/seeds/$t" "tests/fuzz/corpus/$t"; do [ -d "$dir" ] && corpora+=("$dir"); done
  if "$build/fuzz/fuzz_$t" "${corpora[@]}" -max_total_time="$seconds" \
       -timeout=10 -rss_limit_mb=4096 -artifact_prefix="$artifacts/" -print_final_stats=1 \
       > "$probe/$t.log" 2>&1; then
    echo "fuzz: $t: $(grep -E '^stat::number_of_executed_units' "$probe/$t.log" | awk '{print $2}') inputs in ${seconds} s, no crash"
  else
    status=1
    echo "fuzz: $t: FAILED; the input is in $artifacts/:"
    grep -E "ERROR|SUMMARY|terminate|what\(\)|Test unit written" "$probe/$t.log" | head -12
  fi
done
exit $status
