#!/usr/bin/env bash
# Checks a report written by scripts/report.py in headless Chromium:
#   bash scripts/check_report.sh runs/<name>/report
# 1. static: index.html references no external URL, and every <img> names a PNG file next to it
#    with a valid PNG signature and header and a non-trivial size;
# 2. rendered: a copy of the report, with a small script added, is loaded by headless Chromium;
#    after the load event the script writes, into the DOM, how many <img> elements finished
#    loading with a non-zero natural size; --dump-dom prints that DOM and it must say all of them;
# 3. a full-page screenshot is taken (proof that the page paints); it must be a non-trivial PNG.
# Exit 0 when all pass, 1 on a failure, 77 (skip) when no Chromium is installed.
# $CHROMIUM names the browser binary (one not found: skip); otherwise chromium, chromium-browser,
# google-chrome.
set -euo pipefail
dir=${1:?usage: check_report.sh <report_dir>}
if [ ! -f "$dir/index.html" ]; then echo "check_report: no $dir/index.html" >&2; exit 1; fi

python=python3
command -v "$python" >/dev/null || python=/usr/bin/python3

# 1. Static checks (stdlib only).
"$python" - "$dir" <<'EOF'
import os, re, struct, sys
from html.parser import HTMLParser

d = sys.argv[1]

class Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.urls = [], []
    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if k in ("src", "href", "srcset", "data", "action") and v:
                self.urls.append((tag, v))
                if tag == "img" and k == "src":
                    self.imgs.append(v)

text = open(os.path.join(d, "index.html"), encoding="utf-8").read()
p = Refs()
p.feed(text)
bad = [f"{t} {u}" for t, u in p.urls if re.match(r"^([a-z][a-z0-9+.-]*:|//)", u, re.I)
       and not u.startswith("#")]
bad += [m for m in re.findall(r"url\(\s*['\"]?([a-z][a-z0-9+.-]*:|//)[^)]*\)", text, re.I)]
if bad:
    sys.exit(f"check_report: {d}/index.html references external resources: {bad}")
if not p.imgs:
    sys.exit(f"check_report: {d}/index.html has no <img>")
for src in p.imgs:
    path = os.path.join(d, src)
    try:
        with open(path, "rb") as f:
            head = f.read(24)
        size = os.path.getsize(path)
    except OSError as e:
        sys.exit(f"check_report: image {src}: {e}")
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        sys.exit(f"check_report: {path} is not a PNG")
    w, h = struct.unpack(">II", head[16:24])
    if size < 2000 or w < 100 or h < 100:
        sys.exit(f"check_report: {path} is suspiciously small ({size} bytes, {w}x{h})")
print(f"check_report: static ok: {len(p.imgs)} PNG images, no external references")
EOF

# 2./3. Headless Chromium.
browser=${CHROMIUM:-}
if [ -z "$browser" ]; then
  for b in chromium chromium-browser google-chrome google-chrome-stable; do
    if command -v "$b" >/dev/null; then browser=$b; break; fi
  done
fi
if [ -z "$browser" ] || ! command -v "$browser" >/dev/null; then
  echo "check_report: no chromium found${browser:+ ($browser)}; browser check skipped"
  exit 77
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/page"
cp "$dir"/index.html "$dir"/*.png "$work/page/"
"$python" - "$work/page/index.html" <<'EOF'
import sys
path = sys.argv[1]
probe = """<script>
(function () {
  function report() {
    var imgs = Array.prototype.slice.call(document.images);
    var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; });
    var bad = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); })
                  .map(function (i) { return i.getAttribute('src'); });
    var el = document.createElement('pre');
    el.id = 'report-check';
    el.textContent = 'images-ok ' + ok.length + '/' + imgs.length + ' failed: ' + bad.join(',');
    document.body.appendChild(el);
  }
  if (document.readyState === 'complete') report(); else window.addEventListener('load', report);
})();
</script>
"""
text = open(path, encoding="utf-8").read()
if "</body>" not in text:
    sys.exit(f"check_report: {path}: no </body>")
open(path, "w", encoding="utf-8").write(text.replace("</body>", probe + "</body>", 1))
EOF

flags=(--headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run
       --no-default-browser-check --disable-extensions --mute-audio --hide-scrollbars
       --user-data-dir="$work/profile" --allow-file-access-from-files --virtual-time-budget=10000)
url="file://$work/page/index.html"
if ! timeout 120 "$browser" "${flags[@]}" --dump-dom "$url" >"$work/dom.html" 2>"$work/dom.log"; then
  echo "check_report: $browser --dump-dom failed:" >&2
  tail -n 20 "$work/dom.log" >&2
  exit 1
fi
line=$(grep -o 'images-ok [0-9]*/[0-9]* failed: [^<]*' "$work/dom.html" || true)
if [ -z "$line" ]; then
  echo "check_report: the page did not finish loading in Chromium (no probe result in the DOM)" >&2
  tail -n 20 "$work/dom.log" >&2
  exit 1
fi
read -r _ counts _ failed <<<"$line"
loaded=${counts%/*}
total=${counts#*/}
if [ "$loaded" != "$total" ] || [ "$total" -eq 0 ]; then
  echo "check_report: Chromium loaded $loaded of $total images; failed: ${failed:-?}" >&2
  exit 1
fi
grep -q '<title>sinklab report' "$work/dom.html" || { echo "check_report: title missing" >&2; exit 1; }
echo "check_report: Chromium rendered index.html: $loaded/$total images loaded"

shot="$dir/.check_screenshot.png"
timeout 120 "$browser" "${flags[@]}" --window-size=1400,4000 --screenshot="$work/shot.png" \
  "file://$(cd "$dir" && pwd)/index.html" >"$work/shot.log" 2>&1 || true
size=$(stat -c %s "$work/shot.png" 2>/dev/null || echo 0)
if [ "$size" -lt 20000 ]; then
  echo "check_report: no usable screenshot ($size bytes)" >&2
  tail -n 20 "$work/shot.log" >&2
  exit 1
fi
cp "$work/shot.png" "$shot.tmp" && mv "$shot.tmp" "$shot"
echo "check_report: screenshot $shot ($size bytes)"
