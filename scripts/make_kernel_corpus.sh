#!/usr/bin/env bash
# Builds data/raw/kernel_corpus.txt, a large English-and-C corpus for the 152M reproduction
# (docs/REPRODUCTION.md, setting 2), from Debian's linux-source-6.1 package: the text of
# Documentation/ first, then every .c and .h file under 300 KB (larger ones are generated
# tables), each in sorted path order (the same bytes on every machine), until MAX_MB megabytes
# (default 380). SINKS.md reports a first-token sink
# starting on this corpus. Also writes kernel_corpus.txt.xz, small enough (about 53 MB at 380 MB) to
# travel to a machine without network in a 64 MiB working tree; there: xz -dk it.
#   bash scripts/make_kernel_corpus.sh        # needs apt sources and network (apt-get download)
set -euo pipefail
cd "$(dirname "$0")/.."
max_mb=${MAX_MB:-380}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download linux-source-6.1 > /dev/null) ||
  { echo "make_kernel_corpus.sh: apt-get download linux-source-6.1 failed (network, apt sources?)"; exit 1; }
dpkg-deb -x "$work"/linux-source-6.1_*.deb "$work/pkg"
tar -xJf "$work"/pkg/usr/src/linux-source-6.1.tar.xz -C "$work" \
  --wildcards '*/Documentation/*.rst' '*/Documentation/*.txt' '*.c' '*.h'
mkdir -p data/raw
python3 - "$work" data/raw/kernel_corpus.txt "$max_mb" <<'PY'
import os, sys
root, out, max_mb = sys.argv[1], sys.argv[2], float(sys.argv[3])
docs, code = [], []
for d, _, files in os.walk(root):
    if "/pkg" in d:
        continue
    for f in files:
        p = os.path.join(d, f)
        if "/Documentation/" in p and f.endswith((".rst", ".txt")):
            docs.append(p)
        elif f.endswith((".c", ".h")):
            code.append(p)
budget, written, files = int(max_mb * 1e6), 0, 0
with open(out + ".tmp", "wb") as o:
    for p in sorted(docs) + sorted(code):
        if os.path.getsize(p) > 300_000:
            continue  # generated tables (register maps, firmware, keymaps): not language
        data = open(p, "rb").read()
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            continue  # the tokenizer reads UTF-8 text
        if written + len(data) + 2 > budget:
            break
        o.write(data + b"\n\n")
        written += len(data) + 2
        files += 1
os.replace(out + ".tmp", out)
print(f"{out}: {written / 1e6:.1f} MB from {files} files ({len(docs)} documentation, "
      f"{len(code)} C files found)")
PY
xz -9 -T0 -k -f data/raw/kernel_corpus.txt
ls -l data/raw/kernel_corpus.txt data/raw/kernel_corpus.txt.xz
