#!/usr/bin/env bash
# The GPU machine has PCRE2's library (libpcre2-8.so.0, Ubuntu 24.04) but not its header or
# pkg-config file, and nothing can be installed there, so sinklab builds there without the gpt2
# and hf: tokenizers. This writes .pcre2/ (ignored by git; carry it with `run`): pcre2.h from this
# machine's libpcre2-dev (10.42, the version Ubuntu 24.04 ships), a libpcre2-8.so link to the
# system library there, and a libpcre2-8.pc. scripts/gpu_check.sh puts it on PKG_CONFIG_PATH.
#   bash scripts/pcre2_for_device.sh       # here, once; then run(..., carry: [".pcre2", ...])
set -euo pipefail
cd "$(dirname "$0")/.."
header=/usr/include/pcre2.h
[ -f "$header" ] || { echo "pcre2_for_device.sh: $header missing: apt-get install libpcre2-dev"; exit 1; }
mkdir -p .pcre2/include .pcre2/lib/pkgconfig
cp "$header" .pcre2/include/
ln -sf /usr/lib/x86_64-linux-gnu/libpcre2-8.so.0 .pcre2/lib/libpcre2-8.so
version=$(sed -n 's/^#define PCRE2_MAJOR *\([0-9]*\).*/\1/p' "$header").$(sed -n 's/^#define PCRE2_MINOR *\([0-9]*\).*/\1/p' "$header")
cat > .pcre2/lib/pkgconfig/libpcre2-8.pc <<PC
prefix=\${pcfiledir}/../..
includedir=\${prefix}/include
libdir=\${prefix}/lib

Name: libpcre2-8
Description: PCRE2 8-bit library: this machine's header, the GPU machine's library
Version: $version
Libs: -L\${libdir} -lpcre2-8
Cflags: -I\${includedir}
PC
exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
grep -qx "/.pcre2/" "$exclude" 2>/dev/null || echo "/.pcre2/" >> "$exclude"
echo ".pcre2/ written (PCRE2 $version): carry it with run"
