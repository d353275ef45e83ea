#!/usr/bin/env bash
# ctest `report`: trains a tiny baseline vs head-wise RMSNorm run on random tokens, writes its
# report with scripts/report.py, checks the files, the JSONL fallback and the error path, then
# renders the page in headless Chromium (scripts/check_report.sh). Builds nothing: give it the
# build folder.
#   bash tests/report_test.sh build
# Exit code 77 (ctest: skipped) when no python3 with matplotlib and h5py or no Chromium is found;
# on CI (CI=true) those are failures (exit 1).
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/script_test_lib.sh report_test "$@"
find_python "matplotlib, h5py"
[ -n "$python" ] || skip "no python3 with matplotlib and h5py"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

train_two_variants "$tmp" 0
# A probe on random tokens for the 1/(t+1) plot (var_across.png).
OMP_NUM_THREADS=1 "$build/sinklab" probe "$run/baseline/ckpt/step_00000012.h5" --random-tokens 8 \
  --window 8 >"$tmp/probe.log" 2>&1 || { cat "$tmp/probe.log"; exit 1; }

"$python" scripts/report.py "$run"
report="$run/report"
for f in index.html summary.json loss.png sink_mass.png sink_rate.png var_pos.png \
         var_across.png paper_layers.png layer_stats.png super_ratio.png; do
  [ -s "$report/$f" ] || fail "$report/$f missing or empty"
done
for v in baseline headwise_rmsnorm; do
  grep -q "<td>$v</td>" "$report/index.html" || fail "index.html does not mention $v"
done
grep -q "<title>sinklab report: report_test</title>" "$report/index.html" || fail "no title"
if [ -n "$(find "$report" -name '*.tmp')" ]; then fail "temporary files left in $report"; fi

# The JSONL fallback gives the same summary as HDF5.
mkdir "$tmp/jsonl"
cp -r "$run/baseline" "$run/headwise_rmsnorm" "$run/config.yaml" "$tmp/jsonl/"
rm "$tmp/jsonl"/*/metrics.h5
"$python" scripts/report.py "$tmp/jsonl" --out "$tmp/jsonl_report"
"$python" - "$report/summary.json" "$tmp/jsonl_report/summary.json" <<'EOF'
import json, math, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
assert [s["variant"] for s in a] == ["baseline", "headwise_rmsnorm"], a
assert [s["variant"] for s in a] == [s["variant"] for s in b]
for x, y in zip(a, b):
    assert x["steps"] == 12 and x["metrics_step"] == 11, x
    assert math.isfinite(x["sink_mass"]) and math.isfinite(x["best_val_loss"]), x
    for k, v in x.items():
        if k == "source" or v is None or isinstance(v, str):
            assert v == y[k] or k == "source", (k, v, y[k])
        else:
            assert abs(v - y[k]) <= 1e-6 * max(1.0, abs(v)), (k, v, y[k])
assert a[0]["var_ratio_normed"] is None and a[1]["var_ratio_normed"] is not None
for x in a:  # the paper's readings (docs/METRICS.md)
    assert x["sink_onset"] is not None and x["dim_disparity_normed_mean"] is not None, x
    assert x["effective_rank_output_mean"] is not None and x["final_val_loss_se"] is not None, x
print("report_test: HDF5 and JSONL summaries agree")
EOF

# The paired val-loss difference (from each variant's val_losses.json) is the one the run printed
# at its end: "val loss, headwise_rmsnorm - baseline: +0.0123 ± 0.0045 (paired s.e. ...".
line=$(grep "val loss, headwise_rmsnorm - baseline: " "$tmp/compare.log") || fail "no paired line in compare.log"
"$python" - "$report/summary.json" "$line" <<'EOF'
import json, re, sys
s = json.load(open(sys.argv[1]))
m = re.search(r": ([+-][0-9.]+) ± ([0-9.]+) \(paired s.e. over the same ([0-9]+) ", sys.argv[2])
assert m, sys.argv[2]
assert s[0]["val_loss_minus_first"] is None, s[0]
h = s[1]
assert h["paired_batches"] == int(m.group(3)) == 2, (h, m.groups())
assert f'{h["val_loss_minus_first"]:+.4f}' == m.group(1), (h, m.group(1))
assert f'{h["val_loss_minus_first_se"]:.4f}' == m.group(2), (h, m.group(2))
assert abs(h["val_loss_minus_first"] - (h["final_val_loss"] - s[0]["final_val_loss"])) < 1e-6, h
print("report_test: paired difference", m.group(1), "±", m.group(2), "as the run printed")
EOF
grep -q "final val loss − baseline ± paired s.e." "$report/index.html" || fail "no paired column"

# Errors name the path and exit non-zero.
if msg=$("$python" scripts/report.py "$tmp/no_such_run" 2>&1); then fail "missing folder accepted"; fi
grep -q "$tmp/no_such_run" <<<"$msg" || fail "error does not name the path: $msg"
mkdir -p "$tmp/empty/v"
if msg=$("$python" scripts/report.py "$tmp/empty" 2>&1); then fail "run without metrics accepted"; fi
grep -q "no metrics in $tmp/empty" <<<"$msg" || fail "error does not name the path: $msg"

# Headless Chromium: every image loads (skipped, not failed, without Chromium).
set +e
bash scripts/check_report.sh "$report"
rc=$?
set -e
if [ $rc -eq 77 ]; then
  skip "the report was written, but no Chromium renders it (install chromium)"
elif [ $rc -ne 0 ]; then
  fail "scripts/check_report.sh $report exited $rc"
else
  echo "report_test: passed"
fi
