#!/usr/bin/env bash
# ctest `cli`: the command line's failure paths, driving the built binary on a tiny CPU run:
# an unknown command is named; tokenize names its options and missing files; probe refuses a
# non-finite --lambda (it wrote invalid JSON); export --out <existing folder> writes into the
# folder (it failed with a raw filesystem error and left a .tmp); export --format hf reads back
# through probe, forward, generate and train --init-from as its checkpoint does; --stop-after 0
# and an empty --resume are refused before the run's files are touched; forward --device auto is the CPU without a GPU; a full disk while writing
# metrics, the TensorBoard events or a checkpoint exits 1 with the file named and no .tmp left.
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

"$sinklab" train "$tmp/c.yaml" --no-progress >"$tmp/train.log" 2>&1 || fail "$(cat "$tmp/train.log")"
ckpt="$tmp/runs/cli/main/ckpt/step_00000002.h5"
[ -f "$ckpt" ] || fail "no checkpoint $ckpt"

# --stop-after 0 or -5 and an empty --resume (an unset variable) are refused before the run's
# files are touched: they had run a fresh start over them (checkpoints moved aside, metrics cut).
expect_error "--stop-after: a number of steps from 1 up, not 0" "$sinklab" train "$tmp/c.yaml" --stop-after 0
expect_error "not -5" "$sinklab" train "$tmp/c.yaml" --stop-after -5
expect_error "--resume: auto or a checkpoint's path, not an empty value" \
  "$sinklab" train "$tmp/c.yaml" --resume ""
[ -f "$ckpt" ] && [ -s "$tmp/runs/cli/main/metrics.jsonl" ] || fail "a refused command touched the run"
expect_error "--batch: a batch" "$sinklab" export-reference "$tmp/c.yaml" --out "$tmp/ref.st" --batch 0
# run.out_dir that is a file, and a variant named report (report's own folder), are named.
expect_error "cannot create the run's folder $tmp/c.yaml/cli (run.out_dir $tmp/c.yaml)" \
  "$sinklab" train "$tmp/c.yaml" --set run.out_dir="$tmp/c.yaml"
{ cat "$tmp/c.yaml"; echo "variants: [{name: report}]"; } >"$tmp/report_variant.yaml"
expect_error "variant name 'report'" "$sinklab" train "$tmp/report_variant.yaml"
# With metrics.jsonl and metrics.hdf5 off the closing line names no metric files.
"$sinklab" train "$tmp/c.yaml" --no-progress --set run.name=nofiles --set metrics.jsonl=false \
  --set metrics.hdf5=false --set train.steps=1 >"$tmp/nofiles.log" 2>&1 || fail "$(cat "$tmp/nofiles.log")"
! grep -q "metrics in" "$tmp/nofiles.log" || fail "metrics off, yet: $(tail -1 "$tmp/nofiles.log")"
# A --variant name that matches none is named with the config's variants (it had been ignored).
expect_error "--variant typo: configs/quickstart.yaml has no variant of that name (its variants: baseline, headwise_rmsnorm)" \
  "$sinklab" train configs/quickstart.yaml --variant baseline --variant typo

# bench-attention's default device (cuda) where there is no GPU: said, with the option to pass.
if ! nvidia-smi -L >/dev/null 2>&1; then
  expect_error "pass --device cpu" "$sinklab" bench-attention
fi
# probe --out in a folder that does not exist: refused before the probe runs.
expect_error "--out $tmp/nodir/p.json: the folder $tmp/nodir does not exist" \
  "$sinklab" probe "$ckpt" --batches 1 --out "$tmp/nodir/p.json"
for bad in nan inf -inf; do
  expect_error "--lambda is" "$sinklab" probe "$ckpt" --amplify 1 --lambda "$bad" --batches 1
done

mkdir "$tmp/exported"
"$sinklab" export "$ckpt" --format safetensors --out "$tmp/exported" >"$tmp/export.log" 2>&1 ||
  fail "export --out <folder>: $(cat "$tmp/export.log")"
[ -s "$tmp/exported/step_00000002.safetensors" ] || fail "export did not write into the folder"
[ -z "$(find "$tmp/exported" -name '*.tmp')" ] || fail "export left a .tmp"

# The Hugging Face round trip through the command line: export --format hf, then probe, forward,
# generate and train --init-from read the folder as they read the checkpoint.
"$sinklab" export "$ckpt" --format hf --out "$tmp/hf" >"$tmp/export_hf.log" 2>&1 ||
  fail "export --format hf: $(cat "$tmp/export_hf.log")"
for f in config.json generation_config.json model.safetensors; do
  [ -s "$tmp/hf/$f" ] || fail "export --format hf wrote no $f"
done
"$sinklab" forward "$ckpt" --ids 1,2,3,4 --out "$tmp/f_ckpt.safetensors" >/dev/null
"$sinklab" forward "$tmp/hf" --ids 1,2,3,4 --out "$tmp/f_hf.safetensors" --tokenizer byte >/dev/null
cmp -s "$tmp/f_ckpt.safetensors" "$tmp/f_hf.safetensors" ||
  fail "forward on the Hugging Face export differs from forward on its checkpoint"
# --device auto: the CPU where no GPU is present (the same bits as --device cpu), a GPU elsewhere.
"$sinklab" forward "$ckpt" --ids 1,2,3,4 --out "$tmp/f_auto.safetensors" --device auto >/dev/null ||
  fail "forward --device auto failed"
if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
  cmp -s "$tmp/f_ckpt.safetensors" "$tmp/f_auto.safetensors" ||
    fail "forward --device auto differs from --device cpu on a machine without a GPU"
fi
expect_error "gpu" "$sinklab" forward "$ckpt" --ids 1,2 --device gpu
probe_loss() { "$sinklab" probe "$@" --batches 1 --out "$tmp/p.json" | sed -n 's/.*tokens, loss //p'; }
[ "$(probe_loss "$ckpt")" = "$(probe_loss "$tmp/hf" --set data.dir="$tmp/data" --set data.tokenizer=byte \
  --set train.batch_size=2 --set run.seed=5)" ] ||
  fail "probe of the Hugging Face export differs from probe of its checkpoint"
gen_ckpt=$("$sinklab" generate "$ckpt" --prompt "ab" --tokens 5 --top-k 3 --seed 2)
gen_hf=$("$sinklab" generate "$tmp/hf" --prompt "ab" --tokens 5 --top-k 3 --seed 2 --tokenizer byte)
[ "$gen_ckpt" = "$gen_hf" ] || fail "generate differs: '$gen_ckpt' vs '$gen_hf'"
expect_error "--temperature is -1" "$sinklab" generate "$ckpt" --prompt a --temperature -1
"$sinklab" train "$tmp/c.yaml" --no-progress --init-from "$tmp/hf" --set run.name=init \
  --set train.steps=1 >"$tmp/init.log" 2>&1 || fail "--init-from: $(cat "$tmp/init.log")"
grep -q "weights from the Hugging Face model $tmp/hf" "$tmp/init.log" ||
  fail "--init-from did not say where the weights came from: $(cat "$tmp/init.log")"
expect_error "has shape" "$sinklab" train "$tmp/c.yaml" --no-progress --init-from "$tmp/hf" \
  --set run.name=init2 --set model.n_embd=32
expect_error "does not exist" "$sinklab" probe "$tmp/nothing.h5"
# A full disk (a file-size limit: writes past it fail with EFBIG) while writing the metrics
# (64 KiB, the tiny model), a checkpoint (512 KiB, a 64-wide model's ~1 MB checkpoint) or the
# TensorBoard events file (8 KiB, about ten steps, the other metric files off): the error names
# the file, the exit code is 1 (it had been 139: HDF5's exit handler closed the failed file
# again), and no .tmp is left behind.
for case in "64 16 metrics.h5" "512 64 ckpt/step_00000002.h5." \
            "8 16 events.out.tfevents. --set metrics.hdf5=false --set metrics.jsonl=false --set train.steps=60 --set checkpoint.every=0"; do
  read -r limit width file sets <<<"$case"
  rc=0
  # shellcheck disable=SC2086
  (trap '' XFSZ; ulimit -f "$limit"; exec "$sinklab" train "$tmp/c.yaml" --no-progress \
     --set run.out_dir="$tmp/full_$limit" --set model.n_embd="$width" $sets) >"$tmp/full.log" 2>&1 ||
    rc=$?
  [ $rc -eq 1 ] || fail "disk full at $limit KiB: exit $rc, expected 1: $(tail -3 "$tmp/full.log")"
  grep -qF "I/O error: " "$tmp/full.log" && grep -qF "$tmp/full_$limit/cli/main/$file" "$tmp/full.log" ||
    fail "disk full at $limit KiB: the error does not name $file: $(cat "$tmp/full.log")"
  [ -z "$(find "$tmp/full_$limit" -name '*.tmp')" ] || fail "disk full at $limit KiB left a .tmp"
done
echo "cli_test: passed"
