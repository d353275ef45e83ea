#!/usr/bin/env bash
# ctest `tensorboard`: trains a tiny baseline vs head-wise RMSNorm run and reads each variant's
# TensorBoard events file back with scripts/tfevents_reader.py (protobuf message classes built
# from a descriptor made at run time, every record's CRC-32C checked with crcmod and with the
# reader's own table): tags, steps and values must equal metrics.jsonl's
# (scripts/interop_tensorboard.py check --reader sinklab). Then resumes one variant from an
# earlier checkpoint after a torn record was appended to its events file: the records before the
# checkpoint stay byte for byte, the torn one and those after are written anew, once. Last, the
# checker itself must fail on a changed value and on a damaged record. Builds nothing: give it
# the build folder.
#   bash tests/tensorboard_test.sh build
# Exit code 77 (ctest: skipped) when no python3 with protobuf and crcmod is found; on CI
# (CI=true) that is a failure (scripts/test.sh installs python3-protobuf and python3-crcmod).
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/script_test_lib.sh tensorboard_test "$@"
find_python "google.protobuf, crcmod"
[ -n "$python" ] ||
  skip "no python3 with protobuf and crcmod (apt-get install python3-protobuf python3-crcmod)"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

export OMP_NUM_THREADS=1  # far too small a model for threads to pay
train_two_variants "$tmp" 4
grep -q "^  tensorboard: true" "$run/config.yaml" || fail "config.yaml lacks metrics.tensorboard"
"$python" scripts/interop_tensorboard.py check "$run" --reader sinklab || fail "events != metrics.jsonl"

# Resume baseline from step 4 after a torn record (the first 30 bytes of a record) was appended.
events=$(ls "$run"/baseline/events.out.tfevents.*.sinklab)
cp "$events" "$tmp/before.tfevents"
head -c 30 "$events" >>"$events"
"$build/sinklab" train "$tmp/tiny.yaml" --variant baseline --no-progress \
  --resume "$run/baseline/ckpt/step_00000004.h5" >"$tmp/resume.log" 2>&1 || fail "resume: $(cat "$tmp/resume.log")"
[ "$(ls "$run"/baseline/events.out.tfevents.*)" = "$events" ] || fail "resume did not continue $events"
"$python" scripts/interop_tensorboard.py check "$run" --reader sinklab || fail "events != metrics.jsonl after the resume"
"$python" - "$tmp/before.tfevents" "$events" <<'EOF' || fail "the resume did not cut the events file back to step 4"
import sys
sys.path.insert(0, "scripts")
import tfevents_reader as r
before, after = (r.read_events(p) for p in sys.argv[1:3])
kept = [e for e in before if e[2].step < 4]  # the file_version record (step 0) and steps 0-3
assert len(kept) == 5, len(kept)
assert [d for _, d, _ in after[:5]] == [d for _, d, _ in kept], "records before step 4 changed"
new = after[5:]
assert [e.step for _, _, e in new] == list(range(4, 13)), [e.step for _, _, e in new]
assert min(e.wall_time for _, _, e in new) > max(e.wall_time for _, _, e in before), "not rewritten"
print("tensorboard_test: resume kept steps 0-3 byte for byte and rewrote steps 4-12 once each")
EOF

# The checker fails on a changed value and on a damaged record (else it could not catch one).
mkdir "$tmp/changed" "$tmp/damaged"
cp "$run/baseline/metrics.jsonl" "$events" "$tmp/changed/"
cp "$run/baseline/metrics.jsonl" "$events" "$tmp/damaged/"
sed -i '4s/"loss":/"loss":1/' "$tmp/changed/metrics.jsonl"
out=$("$python" scripts/interop_tensorboard.py check "$tmp/changed" --reader sinklab 2>&1) &&
  fail "a changed loss passed: $out"
grep -q "train/loss at step 3" <<<"$out" || fail "the changed loss was not named: $out"
damaged=$(ls "$tmp"/damaged/events.out.tfevents.*)
printf '\xff' | dd of="$damaged" bs=1 seek=200 conv=notrunc status=none
rc=0
out=$("$python" scripts/interop_tensorboard.py check "$tmp/damaged" --reader sinklab 2>&1) || rc=$?
[ $rc -eq 2 ] && grep -q "CRC mismatch" <<<"$out" || fail "a damaged record gave exit $rc: $out"
echo "tensorboard_test: passed"
