#!/usr/bin/env bash
# One chunk of a long run on the GPU machine, within one device call: builds build-gpu when
# missing, prepares the config's data when missing (decompressing data/raw/*.xz that travelled
# with `carry`), then runs `sinklab compare CONFIG --resume auto` and stops it with SIGTERM after
# SECONDS (the trainer writes a checkpoint and exits 0; the next chunk resumes from it while the
# machine is still warm). The metrics so far are copied, xz-compressed, to $OUT after every chunk,
# and the report too once the run has finished. After the last chunk, each variant's final
# checkpoint is also probed under the paper's interventions (the checkpoints stay on the GPU
# machine, which is handed back at the end of the session): one `sinklab probe --plan` a variant
# over the lines of $PROBES (each line: probe options, an empty line = no intervention), the
# printed tables in $OUT/probes.txt and the JSON files (<variant>_<i>.json, i the line's place
# in $PROBES) in $OUT/probes.tar.gz.
#   bash scripts/gpu_train_chunk.sh CONFIG [SECONDS, default 480]
#   PROBES: default isolate, amplify and plain scaling at key 16 in layers 0-3, lambda 10 and 30
#   (a line the model cannot take stops that variant's probes of its pass before the first)
#   PROBE_SPLIT: the plan runs in two passes, its first PROBE_SPLIT lines (default 3) on every
#     variant, then the rest on every variant, each pass one `probe --plan` a variant (the
#     checkpoint read once a pass): a call cut short leaves every variant the plan's first
#     lines, and only the variant it cut without that pass's JSON files (its tables are in
#     probes.txt). 0: one pass, every line on one variant before the next.
#   PROBE_BATCHES: validation batches per probe (default 8); PROBE_DEVICE: where the probes run
#     (default cuda: `sinklab probe` runs on the CPU unless told, 100 s a probe of the 152M model
#     on the GPU machine's 16 cores)
#   PROBE_ONLY=1: no training, no report: probe the newest checkpoints a call before left on
#     this machine (after a final call cut during its probes); PROBE_FROM=N starts at the plan's
#     line N (the JSON files still named by their line in the whole plan) and PROBE_VARIANTS="a b"
#     probes only those variants.
#   CHUNK_SET: --set overrides for the run, e.g. "train.steps=300 optim.warmup_steps=15" (give
#     every chunk of a run the same ones).
#   UNPACK_ONLY=1: build, decompress the data/raw/*.xz that travelled, and stop: the call before
#     the training calls when the corpora and the tree are over the 64 MiB carry together (one
#     corpus a call; the decompressed text stays on the warm machine between calls).
#   FINAL=1: this is the run's last call: write the report and probe the newest checkpoints even
#     when the run was stopped before its last step (a lease that ends early still gets them).
#   CALL_SECONDS: the device call's whole limit (its timeout_s). When set, the run is stopped
#     early enough to leave RESERVE_SECONDS (default 120; the final evaluation, checkpoint,
#     report and probes) before it, counting the build and the data's preparation in this call.
#   RANKS: GPUs to train on (default 1). With more, the variants train side by side on separate
#     groups of RANKS / variants GPUs (run.variant_placement split; RANKS must be a multiple of
#     the variant count), with the same global batches; SIGTERM to rank 0 stops every rank on
#     the same step.
set -uo pipefail
cd "$(dirname "$0")/.."
config=${1:?usage: gpu_train_chunk.sh CONFIG [SECONDS]}
seconds=${2:-480}
started=$SECONDS  # bash's clock: what the build and the preparation take counts against CALL_SECONDS
out=${OUT:-/tmp}
build=${SINKLAB_BUILD_DIR:-build-gpu}
# PCRE2's header where the machine lacks it (the GPT-2 tokenizer's; scripts/pcre2_for_device.sh)
[ -d .pcre2/lib/pkgconfig ] && export PKG_CONFIG_PATH=$PWD/.pcre2/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
if [ ! -x "$build/sinklab" ]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \
    > "$out/configure.log" 2>&1 && cmake --build "$build" -j "$(nproc)" > "$out/build.log" 2>&1 ||
    { tail -30 "$out/build.log" "$out/configure.log" 2>/dev/null; exit 1; }
fi
for packed in data/raw/*.xz; do
  [ -e "$packed" ] && [ ! -e "${packed%.xz}" ] && xz -dk -T0 "$packed"
done
if [ -n "${UNPACK_ONLY:-}" ]; then
  ls -l data/raw/
  exit 0
fi
# config_value SECTION KEY [DEFAULT]: a value of the config file
config_value() {
  python3 -c "import sys, yaml
section = yaml.safe_load(open(sys.argv[1]))[sys.argv[2]]
print(section[sys.argv[3]] if len(sys.argv) < 5 else section.get(sys.argv[3], sys.argv[4]))" \
    "$config" "$@"
}
data_dir=$(config_value data dir)
if ! ls "$data_dir"/train_*.bin > /dev/null 2>&1; then
  "$build/sinklab" prepare "$config" | tail -4 || exit 1
fi
name=$(config_value run name)
run_dir=$(config_value run out_dir runs)/$name  # the run's folder
default_probes='
--isolate 16
--amplify 16 --lambda 10 --layers 0 1 2 3
--scale 16 --lambda 10 --layers 0 1 2 3
--amplify 16 --lambda 30 --layers 0 1 2 3
--scale 16 --lambda 30 --layers 0 1 2 3'
if [ -n "${PROBE_ONLY:-}" ]; then
  # No training: the newest checkpoints a call before left on this machine, probed again (the
  # plan lines a cut call did not reach: PROBE_FROM, PROBE_VARIANTS).
  status=0
  finished=1
else
  ranks=${RANKS:-1}
  args=(compare "$config" --no-progress --resume auto)
  for kv in ${CHUNK_SET:-}; do args+=(--set "$kv"); done
  vars=(WORLD_SIZE="$ranks" MASTER_ADDR=127.0.0.1 MASTER_PORT=$((29000 + RANDOM % 900)))
  if [ -n "${CALL_SECONDS:-}" ]; then  # what is left of the call, less the reserve
    left=$((CALL_SECONDS - (SECONDS - started) - ${RESERVE_SECONDS:-120}))
    [ "$left" -lt "$seconds" ] && seconds=$left
    if [ "$seconds" -lt 1 ]; then
      echo "gpu_train_chunk.sh: no time left to train within CALL_SECONDS=$CALL_SECONDS" \
        "(RESERVE_SECONDS ${RESERVE_SECONDS:-120}); the next call resumes" | tee "$out/chunk.log"
      exit 0
    fi
    echo "gpu_train_chunk.sh: training for at most $seconds s (CALL_SECONDS=$CALL_SECONDS)"
  fi
  if [ "$ranks" -gt 1 ]; then
    export NCCL_NVLS_ENABLE=0  # NVLink multicast stays off on shared hosts
    args+=(--set run.variant_placement=split)
    for ((r = 1; r < ranks; ++r)); do
      env RANK=$r LOCAL_RANK=$r "${vars[@]}" "$build/sinklab" "${args[@]}" > "$out/chunk.log.$r" 2>&1 &
    done
  fi
  env RANK=0 LOCAL_RANK=0 "${vars[@]}" timeout -s TERM "$seconds" "$build/sinklab" "${args[@]}" \
    > "$out/chunk.log" 2>&1
  status=$?
  wait  # the other ranks stop on the step rank 0 stops on
  for ((r = 1; r < ranks; ++r)); do cat "$out/chunk.log.$r" >> "$out/chunk.log"; done
  grep -E "^step .*val loss|resumed|interrupted|wall time" "$out/chunk.log" | tail -8
  for variant in "$run_dir"/*/; do
    v=$(basename "$variant")
    [ -f "$variant/metrics.jsonl" ] && xz -c "$variant/metrics.jsonl" > "$out/metrics_$v.jsonl.xz"
  done
  finished=0
  grep -q "^wall time" "$out/chunk.log" && ! grep -q interrupted "$out/chunk.log" && finished=1
fi
if { [ $status -eq 0 ] || [ $status -eq 124 ]; } && { [ $finished = 1 ] || [ "${FINAL:-0}" = 1 ]; }; then
  [ -n "${PROBE_ONLY:-}" ] || { "$build/sinklab" report "$run_dir" > /dev/null 2>&1 &&
    tar -C "$run_dir" -czf "$out/report.tar.gz" report; }
  # One `sinklab probe --plan` a variant and pass: its checkpoint is read once for the pass's
  # lines (with a process a line, each read all 1.8 GB at 152M).
  probe_dir=$(mktemp -d)
  from=${PROBE_FROM:-1}  # the plan's first line to run (1: all); JSON files keep whole-plan numbers
  sed 's/^[[:space:]]*$/none/' <<< "${PROBES-$default_probes}" | tail -n +"$from" > "$probe_dir/lines.txt"
  lines=$(wc -l < "$probe_dir/lines.txt")
  split=${PROBE_SPLIT:-3}
  passes="1-$lines"  # ranges of lines.txt, each run on every variant before the next
  [ "$split" -gt 0 ] && [ "$split" -lt "$lines" ] && passes="1-$split $((split + 1))-$lines"
  [ "$lines" -gt 0 ] || passes=""  # PROBE_FROM past the plan's end: nothing to probe
  # The tables go to probes.txt as they are printed; the JSON files are packed after each
  # variant's pass, into a .part renamed over probes.tar.gz (a call cut during the packing keeps
  # the last whole archive).
  mkdir -p "$probe_dir/json"
  for pass in $passes; do
    first=${pass%-*}; last=${pass#*-}
    sed -n "${first},${last}p" "$probe_dir/lines.txt" > "$probe_dir/plan.txt"
    offset=$((from - 1 + first - 1))  # a pass's line i is the whole plan's line i + offset
    for variant in "$run_dir"/*/; do
      v=$(basename "$variant")
      ckpt=$(ls "$variant"ckpt/step_*.h5 2> /dev/null | sort | tail -1)
      [ -n "$ckpt" ] || continue
      [ -z "${PROBE_VARIANTS:-}" ] || [[ " $PROBE_VARIANTS " == *" $v "* ]] || continue
      echo "== $v $(basename "$ckpt"), plan lines $((first + from - 1)) to $((last + from - 1))" >> "$out/probes.txt"
      rm -rf "$probe_dir/pass" && mkdir "$probe_dir/pass"
      "$build/sinklab" probe "$ckpt" --device "${PROBE_DEVICE:-cuda}" --batches "${PROBE_BATCHES:-8}" \
        --plan "$probe_dir/plan.txt" --out "$probe_dir/pass/$v" >> "$out/probes.txt" 2>&1 ||
        echo "probe failed" >> "$out/probes.txt"
      for i in $(ls "$probe_dir/pass" | sed -n "s/^${v}_\([0-9]*\)\.json$/\1/p"); do
        mv "$probe_dir/pass/${v}_$i.json" "$probe_dir/json/${v}_$((i + offset)).json"
      done
      tar -C "$probe_dir/json" -czf "$out/probes.tar.gz.part" . &&
        mv "$out/probes.tar.gz.part" "$out/probes.tar.gz"
    done
  done
  rm -rf "$probe_dir"
fi
exit $(( status == 124 ? 0 : status ))
