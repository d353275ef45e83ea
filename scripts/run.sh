#!/usr/bin/env bash
# Quick start: install what is missing (as root), build, get the data, prepare token shards,
# then train the baseline and head-wise RMSNorm variants side by side:
#   bash scripts/run.sh [config.yaml] [--set key=value ...]
# Default config: configs/quickstart.yaml (a few minutes on a 2-core CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
sinklab_install_deps
sinklab_build >/dev/null
config=${1:-configs/quickstart.yaml}
shift || true
bash scripts/get_data.sh
build=${SINKLAB_BUILD_DIR:-build}
"$build/sinklab" prepare "$config" "$@"
"$build/sinklab" compare "$config" "$@"
