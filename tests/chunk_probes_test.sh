#!/usr/bin/env bash
# ctest `chunk_probes`: scripts/gpu_train_chunk.sh's probes of a finished run (PROBE_ONLY=1, on
# the CPU): a plan of five lines run in two passes (PROBE_SPLIT=2: lines 1-2 on every variant,
# then 3-5) gives the same JSON files, named by their line in the whole plan, as one pass
# (PROBE_SPLIT=0, every line on one variant before the next), in the order the split promises;
# PROBE_FROM=2 with PROBE_VARIANTS gives that variant's files from line 2 on again. Builds
# nothing: give it the build folder.
#   bash tests/chunk_probes_test.sh build
# Exit code 77 (ctest: skipped) when no python3 with PyYAML is found; on CI a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/script_test_lib.sh chunk_probes_test "$@"
find_python "yaml"
[ "$python" = python3 ] || skip "no python3 with PyYAML first on PATH (gpu_train_chunk.sh's)"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
train_two_variants "$tmp" 0

plan=$'--isolate 4\n\n--amplify 4 --lambda 10 --layers 0\n--scale 4 --lambda 10 --layers 0\n--window 8'
# probe_run NAME [VAR=value ...]: the probes of $run's final checkpoints into $tmp/NAME (OUT) and
# their JSON files unpacked into $tmp/NAME/json.
probe_run() {
  local name=$1
  shift
  mkdir -p "$tmp/$name/json"
  env "$@" OUT="$tmp/$name" SINKLAB_BUILD_DIR="$build" PROBE_ONLY=1 PROBE_DEVICE=cpu \
    PROBE_BATCHES=1 PROBES="$plan" OMP_NUM_THREADS=1 \
    bash scripts/gpu_train_chunk.sh "$tmp/tiny.yaml" >"$tmp/$name.log" 2>&1 ||
    fail "$name: gpu_train_chunk.sh: $(cat "$tmp/$name.log")"
  tar -xzf "$tmp/$name/probes.tar.gz" -C "$tmp/$name/json" || fail "$name: no probes.tar.gz"
  if grep -q "probe failed" "$tmp/$name/probes.txt"; then fail "$name: $(cat "$tmp/$name/probes.txt")"; fi
}

probe_run split PROBE_SPLIT=2
probe_run whole PROBE_SPLIT=0
probe_run from2 PROBE_FROM=2 PROBE_VARIANTS=headwise_rmsnorm

want="baseline_1.json baseline_2.json baseline_3.json baseline_4.json baseline_5.json"
want+=" headwise_rmsnorm_1.json headwise_rmsnorm_2.json headwise_rmsnorm_3.json"
want+=" headwise_rmsnorm_4.json headwise_rmsnorm_5.json"
files=$(cd "$tmp/split/json" && ls | sort | tr '\n' ' ')
[ "$files" = "$want " ] || fail "split: JSON files '$files', want '$want'"
diff -r "$tmp/split/json" "$tmp/whole/json" >/dev/null || fail "the split plan's JSON files differ from one pass's"
headers=$(grep "^== [a-z_]* step" "$tmp/split/probes.txt" | sed -E 's/ step_[0-9]+\.h5//' | tr '\n' '|')
[ "$headers" = "== baseline, plan lines 1 to 2|== headwise_rmsnorm, plan lines 1 to 2|== baseline, plan lines 3 to 5|== headwise_rmsnorm, plan lines 3 to 5|" ] ||
  fail "split: passes in the wrong order: $headers"
headers=$(grep "^== [a-z_]* step" "$tmp/whole/probes.txt" | sed -E 's/ step_[0-9]+\.h5//' | tr '\n' '|')
[ "$headers" = "== baseline, plan lines 1 to 5|== headwise_rmsnorm, plan lines 1 to 5|" ] ||
  fail "one pass: $headers"
# The JSON files name the options of their line (isolate on line 1, the window on line 5).
grep -q '"isolate":\[4\]' "$tmp/split/json/baseline_1.json" || fail "baseline_1.json is not line 1's"
grep -q '"window":8' "$tmp/split/json/baseline_5.json" || fail "baseline_5.json is not line 5's"

files=$(cd "$tmp/from2/json" && ls | sort | tr '\n' ' ')
[ "$files" = "headwise_rmsnorm_2.json headwise_rmsnorm_3.json headwise_rmsnorm_4.json headwise_rmsnorm_5.json " ] ||
  fail "PROBE_FROM=2: JSON files '$files'"
for f in "$tmp/from2/json"/*.json; do
  cmp -s "$f" "$tmp/whole/json/$(basename "$f")" || fail "PROBE_FROM=2: $(basename "$f") differs"
done
echo "chunk_probes_test: passed"
