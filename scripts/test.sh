#!/usr/bin/env bash
# Installs what is missing (as root), configures, builds and runs every test with ctest.
# [cuda] tests skip themselves where no GPU is present.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
# python3-protobuf, python3-crcmod: tests/tensorboard_test.sh; python3-yaml:
# tests/chunk_probes_test.sh (scripts/gpu_train_chunk.sh reads the config); clang,
# libclang-rt-dev and libomp-dev: scripts/fuzz.sh (libFuzzer); openmpi-bin: the ranks launched by
# mpirun (ctest `mpi`).
sinklab_install_deps python3-torch python3-numpy python3-matplotlib python3-h5py chromium \
  python3-protobuf python3-crcmod python3-yaml clang libclang-rt-dev libomp-dev openmpi-bin
sinklab_build
# The corpora and GPT-2's vocabulary for the tokenizer tests; where they cannot be fetched, those
# tests report themselves as skipped (on CI, with CI=true, as failed).
bash scripts/get_data.sh || echo "test: scripts/get_data.sh could not fetch everything (see above)" >&2
ctest --test-dir "${SINKLAB_BUILD_DIR:-build}" --output-on-failure -j 1
