#!/usr/bin/env bash
# One chunk of a long run on the GPU machine, within one device call: builds build-gpu when
# missing, prepares the config's data when missing (decompressing data/raw/*.xz that travelled
# with `carry`), then runs `sinklab compare CONFIG --resume auto` and stops it with SIGTERM after
# SECONDS (the trainer writes a checkpoint and exits 0; the next chunk resumes from it while the
# machine is still warm). The metrics so far are copied, xz-compressed, to $OUT after every chunk,
# and the report too once the run has finished.
#   bash scripts/gpu_train_chunk.sh CONFIG [SECONDS, default 480]
set -uo pipefail
cd "$(dirname "$0")/.."
config=${1:?usage: gpu_train_chunk.sh CONFIG [SECONDS]}
seconds=${2:-480}
out=${OUT:-/tmp}
build=${SINKLAB_BUILD_DIR:-build-gpu}
if [ ! -x "$build/sinklab" ]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \
    > "$out/configure.log" 2>&1 && cmake --build "$build" -j "$(nproc)" > "$out/build.log" 2>&1 ||
    { tail -30 "$out/build.log" "$out/configure.log" 2>/dev/null; exit 1; }
fi
for packed in data/raw/*.xz; do
  [ -e "$packed" ] && [ ! -e "${packed%.xz}" ] && xz -dk "$packed"
done
data_dir=$(python3 -c "import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))['data']['dir'])" "$config")
if ! ls "$data_dir"/train_*.bin > /dev/null 2>&1; then
  "$build/sinklab" prepare "$config" | tail -4 || exit 1
fi
name=$(python3 -c "import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))['run']['name'])" "$config")
timeout -s TERM "$seconds" "$build/sinklab" compare "$config" --no-progress --resume auto \
  > "$out/chunk.log" 2>&1
status=$?
grep -E "^step .*val loss|resumed|interrupted|wall time" "$out/chunk.log" | tail -8
for variant in runs/"$name"/*/; do
  v=$(basename "$variant")
  [ -f "$variant/metrics.jsonl" ] && xz -c "$variant/metrics.jsonl" > "$out/metrics_$v.jsonl.xz"
done
if [ $status -eq 0 ] && grep -q "^wall time" "$out/chunk.log" && ! grep -q interrupted "$out/chunk.log"; then
  "$build/sinklab" report "runs/$name" > /dev/null 2>&1 &&
    tar -C "runs/$name" -czf "$out/report.tar.gz" report
fi
exit $(( status == 124 ? 0 : status ))
