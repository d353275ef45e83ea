#!/usr/bin/env bash
# ctest `cli`: the command line's failure paths, driving the built binary on a tiny CPU run:
# an unknown command is named; tokenize names its options and missing files; probe refuses a
# non-finite --lambda (it wrote invalid JSON); export --out <existing folder> writes into the
# folder (it failed with a raw filesystem error and left a .tmp); --stop-after 0 runs no step; a
# full disk while writing metrics or a checkpoint exits 1 with the file named and no .tmp left.
# Builds nothing: give it the build folder.
#   bash tests/cli_test.sh build
set -euo pipefail
cd "$(dirname "$0")/.."
build=$(cd "${1:?usage: cli_test.sh <build_dir>}" && pwd)
sinklab="$build/sinklab"
[ -x "$sinklab" ] || { echo "cli_test: no $sinklab (build first)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "cli_test: FAIL: $*" >&2; exit 1; }
expect_error() {  # expect_error "text the error must contain" command...
  local want=$1; shift
  local out rc=0
  out=$("$@" 2>&1) || rc=$?
  [ $rc -ne 0 ] || fail "'$*' succeeded; expected an error containing: $want"
  grep -qF -- "$want" <<<"$out" || fail "'$*' said: $out -- expected: $want"
}

expect_error "unknown command 'bogus'" "$sinklab" bogus
expect_error "the commands are: train compare" "$sinklab" bogus --flag

# tokenize: ids on stdout; its failure paths name the option or the file.
[ "$("$sinklab" tokenize --tokenizer byte --text "AB")" = "65 66" ] || fail "tokenize --text AB"
expect_error "nothing to do" "$sinklab" tokenize --tokenizer byte
expect_error "both --file and --text" "$sinklab" tokenize --tokenizer byte --text a --file "$0"
expect_error "hf:\" without a path" "$sinklab" tokenize --tokenizer hf: --text a
expect_error "$tmp/none.json does not exist (--tokenizer)" "$sinklab" tokenize --tokenizer "$tmp/none.json" --text a
expect_error "$tmp/none/: tokenizer.json not found" "$sinklab" tokenize --tokenizer "hf:$tmp/none/" --text a
"$sinklab" tokenize --tokenizer byte --write-hf "$tmp/hf_byte" >/dev/null || fail "tokenize --write-hf"
[ "$("$sinklab" tokenize --tokenizer "hf:$tmp/hf_byte" --text "AB")" = "65 66" ] ||
  fail "the written byte tokenizer.json does not read back"

python3 scripts/make_bench_data.py "$tmp/data" --vocab 256 --tokens 4000 >/dev/null
cat >"$tmp/c.yaml" <<YAML
run: {name: cli, out_dir: $tmp/runs, device: cpu, seed: 5}
model: {arch: gpt2, n_layer: 1, n_head: 2, n_embd: 16, block_size: 8, vocab_size: 0}
data: {dir: $tmp/data, tokenizer: byte}
train: {steps: 4, batch_size: 2, eval_every: 0, eval_batches: 1, log_every: 1, sample_tokens: 0}
checkpoint: {every: 2}
YAML
export OMP_NUM_THREADS=1

# --stop-after 0: no step, no metrics line, exit 0.
"$sinklab" train "$tmp/c.yaml" --no-progress --stop-after 0 >"$tmp/stop0.log" 2>&1 ||
  fail "--stop-after 0 failed: $(cat "$tmp/stop0.log")"
grep -q "no step run" "$tmp/stop0.log" || fail "--stop-after 0 did not say so: $(cat "$tmp/stop0.log")"
[ ! -s "$tmp/runs/cli/main/metrics.jsonl" ] || fail "--stop-after 0 trained a step"

"$sinklab" train "$tmp/c.yaml" --no-progress >"$tmp/train.log" 2>&1 || fail "$(cat "$tmp/train.log")"
ckpt="$tmp/runs/cli/main/ckpt/step_00000002.h5"
[ -f "$ckpt" ] || fail "no checkpoint $ckpt"

for bad in nan inf -inf; do
  expect_error "--lambda is" "$sinklab" probe "$ckpt" --amplify 1 --lambda "$bad" --batches 1
done

mkdir "$tmp/exported"
"$sinklab" export "$ckpt" --format safetensors --out "$tmp/exported" >"$tmp/export.log" 2>&1 ||
  fail "export --out <folder>: $(cat "$tmp/export.log")"
[ -s "$tmp/exported/step_00000002.safetensors" ] || fail "export did not write into the folder"
[ -z "$(find "$tmp/exported" -name '*.tmp')" ] || fail "export left a .tmp"
# A full disk (a file-size limit: writes past it fail with EFBIG) while writing the metrics
# (64 KiB, the tiny model) or a checkpoint (512 KiB, a 64-wide model's ~1 MB checkpoint): the
# error names the file, the exit code is 1 (it had been 139: HDF5's exit handler closed the
# failed file again), and no .tmp is left behind.
for case in "64 16 metrics.h5" "512 64 ckpt/step_00000002.h5.tmp"; do
  read -r limit width file <<<"$case"
  rc=0
  (trap '' XFSZ; ulimit -f "$limit"; exec "$sinklab" train "$tmp/c.yaml" --no-progress \
     --set run.out_dir="$tmp/full_$limit" --set model.n_embd="$width") >"$tmp/full.log" 2>&1 ||
    rc=$?
  [ $rc -eq 1 ] || fail "disk full at $limit KiB: exit $rc, expected 1: $(tail -3 "$tmp/full.log")"
  grep -qF "I/O error: " "$tmp/full.log" && grep -qF "$tmp/full_$limit/cli/main/$file" "$tmp/full.log" ||
    fail "disk full at $limit KiB: the error does not name $file: $(cat "$tmp/full.log")"
  [ -z "$(find "$tmp/full_$limit" -name '*.tmp')" ] || fail "disk full at $limit KiB left a .tmp"
done
echo "cli_test: passed"
