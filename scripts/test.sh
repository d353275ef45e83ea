#!/usr/bin/env bash
# Installs what is missing (as root), configures, builds and runs every test with ctest.
# [cuda] tests skip themselves where no GPU is present.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
# python3-protobuf, python3-crcmod: tests/tensorboard_test.sh; the last three: scripts/fuzz.sh
# (libFuzzer).
sinklab_install_deps python3-torch python3-numpy python3-matplotlib python3-h5py chromium \
  python3-protobuf python3-crcmod clang libclang-rt-dev libomp-dev
sinklab_build
ctest --test-dir "${SINKLAB_BUILD_DIR:-build}" --output-on-failure -j 1
