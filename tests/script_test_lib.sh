# The common start of the ctest script tests (tests/*_test.sh), sourced from the repository root
# with the test's name and its arguments:
#   source tests/script_test_lib.sh report_test "$@"
# Sets `build` (the build folder given as first argument, absolute; sinklab must be built there)
# and defines skip, find_python, fail and train_two_variants.

test_name=$1
build=$(cd "${2:?usage: $test_name.sh <build_dir>}" && pwd)
[ -x "$build/sinklab" ] || { echo "$test_name: no $build/sinklab (build first)" >&2; exit 1; }

# skip MESSAGE: exit 77 (ctest: skipped). On CI (CI=true) every test dependency must be there,
# so a missing one fails instead.
skip() {
  if [ "${CI:-}" = true ]; then echo "$test_name: FAIL on CI: $*" >&2; exit 1; fi
  echo "$test_name: skipped: $*"
  exit 77
}

# find_python "MODULE, MODULE": sets `python` to the first of python3 and /usr/bin/python3 that
# imports them (a pyenv python3 first on PATH lacks Debian's python3-* packages), else to "".
find_python() {
  python=""
  local p
  for p in python3 /usr/bin/python3; do
    if command -v "$p" >/dev/null && "$p" -c "import $1" 2>/dev/null; then
      python=$p
      return 0
    fi
  done
}

fail() {
  echo "$test_name: FAIL: $*" >&2
  exit 1
}

# train_two_variants DIR CHECKPOINT_EVERY: random byte-valued tokens in DIR/data (llm.c shards;
# data.tokenizer: byte needs no tokenizer file), DIR/tiny.yaml, and its run in DIR/runs/<test
# name> (sets `run`): 12 steps of a 2-layer LLaMA, baseline vs head-wise RMSNorm, evaluated every
# 4 steps, checkpoints every CHECKPOINT_EVERY steps (0: at the end only). Needs $python.
train_two_variants() {
  local dir=$1 checkpoint_every=$2
  "$python" scripts/make_bench_data.py "$dir/data" --vocab 256 --tokens 20000 >/dev/null
  cat >"$dir/tiny.yaml" <<YAML
run: {name: $test_name, out_dir: $dir/runs, device: cpu, seed: 7}
model: {arch: llama, n_layer: 2, n_head: 2, n_embd: 32, block_size: 16, vocab_size: 0}
data: {dir: $dir/data, tokenizer: byte}
train: {steps: 12, batch_size: 4, eval_every: 4, eval_batches: 2, log_every: 4, sample_tokens: 0}
optim: {lr: 1.0e-2, min_lr: 1.0e-3, warmup_steps: 2}
metrics: {every: 1}
checkpoint: {every: $checkpoint_every}
variants:
  - name: baseline
    set: {model.attn_output_norm: none}
  - name: headwise_rmsnorm
    set: {model.attn_output_norm: headwise_rmsnorm}
YAML
  # One thread: this model is far too small for OpenMP to pay (2.4 s with 2 threads, 0.14 s
  # with one, and ~18 s with 2 threads while another job keeps the cores busy).
  OMP_NUM_THREADS=1 "$build/sinklab" compare "$dir/tiny.yaml" --no-progress >"$dir/compare.log" 2>&1 ||
    fail "compare: $(cat "$dir/compare.log")"
  run="$dir/runs/$test_name"
}
