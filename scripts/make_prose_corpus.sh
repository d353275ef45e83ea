#!/usr/bin/env bash
# Builds data/raw/prose_corpus.txt, English prose for the 152M reproduction (issue 17, part 2),
# from four Debian packages (apt-get download; nothing is installed), each in sorted path order
# so that every machine writes the same bytes, one blank line after each document:
#   python3.11-doc   the Python documentation's reStructuredText sources (html/_sources/*.rst.txt)
#   perl-doc         the Perl manual pages in POD (pod/*.pod)
#   debian-handbook  The Debian Administrator's Handbook, English HTML with the tags removed
#   dict-gcide       GCIDE, the Collaborative International Dictionary of English (Webster's
#                    1913 with WordNet), its dictd entries without the database header
# About 60 MB of text, 17 MB as xz (kernel_corpus.txt.xz is the rest of what travels to the GPU
# machine within the 64 MiB working tree: see configs/paper/llama152m_lease.yaml). Also writes
# prose_corpus.txt.xz; there: xz -dk it (scripts/gpu_train_chunk.sh does).
#   bash scripts/make_prose_corpus.sh        # needs apt sources and network (apt-get download)
set -euo pipefail
cd "$(dirname "$0")/.."
packages=(python3.11-doc perl-doc debian-handbook dict-gcide)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download "${packages[@]}" > /dev/null) ||
  { echo "make_prose_corpus.sh: apt-get download ${packages[*]} failed (network, apt sources?)"; exit 1; }
for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$work/pkg"; done
mkdir -p data/raw
python3 - "$work/pkg" data/raw/prose_corpus.txt <<'PY'
import glob, gzip, html.parser, os, re, sys
root, out = sys.argv[1], sys.argv[2]

class Text(html.parser.HTMLParser):
    """An HTML page's visible text, a blank line after each block element."""
    blocks = {"p", "div", "pre", "li", "dt", "dd", "h1", "h2", "h3", "h4", "h5", "h6", "tr",
              "table", "section", "blockquote"}
    def __init__(self):
        super().__init__()
        self.parts, self.skip = [], 0
    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style", "head"):
            self.skip += 1
    def handle_endtag(self, tag):
        if tag in ("script", "style", "head"):
            self.skip -= 1
        elif tag in self.blocks:
            self.parts.append("\n\n")
    def handle_data(self, data):
        if not self.skip:
            self.parts.append(re.sub(r"\s+", " ", data))
    def text(self):
        lines = [line.strip() for line in "".join(self.parts).split("\n")]
        return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"

def files(pattern):
    return sorted(glob.glob(os.path.join(root, pattern), recursive=True))

def handbook_page(path):
    parser = Text()
    parser.feed(open(path, encoding="utf-8").read())
    return parser.text()

def gcide_entries(path):
    def line(raw):  # UTF-8, with a few Windows-1252 lines (0x92 quotes) among them
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode("cp1252", errors="replace")
    text = "".join(line(raw) for raw in gzip.open(path, "rb"))
    start = text.find("\n\n", text.find("00-database-info"))
    start = text.find("\n\n", text.find("=" * 20, start))  # after the notice
    return [text[start:].strip("\n") + "\n"]

sources = [
    ("python3.11-doc", [open(p, encoding="utf-8").read()
                        for p in files("usr/share/doc/python3.11/html/_sources/**/*.rst.txt")]),
    ("perl-doc", [open(p, encoding="utf-8", errors="replace").read()
                  for p in files("usr/share/perl/*/pod/*.pod")]),
    ("debian-handbook", [handbook_page(p)
                         for p in files("usr/share/doc/debian-handbook/html/en-US/*.html")]),
    ("dict-gcide", gcide_entries(os.path.join(root, "usr/share/dictd/gcide.dict.dz"))),
]
with open(out + ".tmp", "w", encoding="utf-8") as o:
    for name, docs in sources:
        size = 0
        for d in docs:
            o.write(d.rstrip("\n") + "\n\n")
            size += len(d.encode("utf-8"))
        print(f"  {name}: {len(docs)} documents, {size / 1e6:.1f} MB")
        if not docs or size == 0:
            sys.exit(f"make_prose_corpus.sh: nothing read from {name}")
os.replace(out + ".tmp", out)
PY
xz -9 -T0 -k -f data/raw/prose_corpus.txt
ls -l data/raw/prose_corpus.txt data/raw/prose_corpus.txt.xz
