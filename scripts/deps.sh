#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages sinklab builds with, when missing and when run as root.
# Sourced by scripts/test.sh and scripts/run.sh.
# Extra package names may be given as arguments (scripts/test.sh adds PyTorch for the
# cross-check against an independent implementation, matplotlib, h5py and Chromium for the
# report test, and protobuf and crcmod for the TensorBoard test).
sinklab_install_deps() {
  local pkgs=(cmake ninja-build g++ libhdf5-dev libyaml-cpp-dev libcli11-dev catch2 ccache libopenblas-dev "$@")
  local missing=()
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "sinklab: missing packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})" >&2
    return 0
  fi
  apt-get update -qq || return 1
  # Packages this distribution's archive lacks (e.g. python3-torch on older releases) are left
  # out rather than failing the whole install: the tests that need them report themselves as
  # skipped (ctest), except on CI (CI=true), where a missing test dependency fails them.
  local known=()
  for p in "${missing[@]}"; do
    # The exit status alone (0: known, 100: unknown): piping a long entry into `grep -q` made
    # apt-cache die of SIGPIPE under pipefail, and packages that exist were reported missing.
    if apt-cache show "$p" >/dev/null 2>&1; then
      known+=("$p")
    else
      echo "sinklab: no package $p here; left out" >&2
    fi
  done
  [ ${#known[@]} -eq 0 ] && return 0
  echo "sinklab: installing ${known[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${known[@]}" >/dev/null
}

# Configures (Ninja, Release) and builds build/ with every core.
sinklab_build() {
  local build_dir=${SINKLAB_BUILD_DIR:-build}
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release ${SINKLAB_CMAKE_ARGS:-} >/dev/null
  cmake --build "$build_dir" -j "$(nproc)"
}
