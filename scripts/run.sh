#!/usr/bin/env bash
# Quick start: install what is missing (as root), build, get the data, prepare token shards,
# then train the baseline and head-wise RMSNorm variants side by side:
#   bash scripts/run.sh [config.yaml] [--set key=value ...]
# Default config: configs/quickstart.yaml (a few minutes on a 2-core CPU). With no arguments on a
# machine with an NVIDIA GPU and a CUDA build, the same comparison runs on the GPU, larger:
# batch 32 and 1,000 steps (about 13x the tokens of the CPU run's batch 8 and 300 steps).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
sinklab_install_deps
sinklab_build >/dev/null
build=${SINKLAB_BUILD_DIR:-build}
extra=()
if [ $# -eq 0 ] && [ -d "$build/cuda" ] && nvidia-smi -L > /dev/null 2>&1; then
  extra=(--set run.device=cuda --set train.batch_size=32 --set train.steps=1000
         --set train.eval_every=100 --set train.log_every=50)
  echo "sinklab: GPU found: the quick start runs on cuda, batch 32, 1000 steps"
fi
config=${1:-configs/quickstart.yaml}
shift || true
bash scripts/get_data.sh --only corpora
"$build/sinklab" prepare "$config" "$@"
"$build/sinklab" compare "$config" "${extra[@]}" "$@"
