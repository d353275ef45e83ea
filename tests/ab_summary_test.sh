#!/usr/bin/env bash
# ctest `ab_summary`: scripts/ab_summary.py, the paired summary of scripts/bench_ab.sh's rounds,
# on the twenty-first session's real A/B lines (tests/data/ab_rounds.log, one H100) and on
# made-up lines with both metrics modes, a label missing from a round and no usable line.
#   bash tests/ab_summary_test.sh [build] (needs python3 only; the build folder is not used)
set -euo pipefail
cd "$(dirname "$0")/.."
fail() { echo "ab_summary_test: FAIL: $*" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
expect_line() {  # expect_line FILE "text the output must hold on one line"
  grep -qF -- "$2" "$1" || { cat "$1" >&2; fail "no line with: $2"; }
}

python3 scripts/ab_summary.py tests/data/ab_rounds.log > "$tmp/real.txt"
expect_line "$tmp/real.txt" "gpt2_headwise, metrics every step: against [defaults], paired by round"
expect_line "$tmp/real.txt" "[defaults] 473,632, 471,881 tok/s; its own spread over the rounds 0.37%"
# (468492 / 473632 - 1 + 466206 / 471881 - 1) / 2 = -1.144%
expect_line "$tmp/real.txt" "[ffn2] 468,492, 466,206 tok/s; -1.14% (rounds -1.20 to -1.09%, 2 paired); beyond the baseline's spread"
expect_line "$tmp/real.txt" "[kv2] 471,158, 471,460 tok/s; -0.31% (rounds -0.52 to -0.09%, 2 paired); within the baseline's spread"

# Both modes on one line (AB_METRICS="0 1"), three rounds, a label absent from round 3 and
# one whose rounds disagree in sign by more than the baseline's spread.
cat > "$tmp/both.log" <<'LOG'
round 1 llama [defaults]  sinklab bf16, metrics off 400000 tok/s ;sinklab bf16, metrics every step 390000 tok/s ;
round 1 llama [a]  sinklab bf16, metrics off 404000 tok/s ;sinklab bf16, metrics every step 380000 tok/s ;
round 1 llama [b]  sinklab bf16, metrics off 410000 tok/s ;sinklab bf16, metrics every step 390000 tok/s ;
round 2 llama [defaults]  sinklab bf16, metrics off 401000 tok/s ;sinklab bf16, metrics every step 390000 tok/s ;
round 2 llama [a]  sinklab bf16, metrics off 405010 tok/s ;sinklab bf16, metrics every step 380250 tok/s ;
round 2 llama [b]  sinklab bf16, metrics off 390000 tok/s ;sinklab bf16, metrics every step 390000 tok/s ;
round 3 llama [defaults]  sinklab bf16, metrics off 400000 tok/s ;sinklab bf16, metrics every step 391000 tok/s ;
round 3 llama [b]  sinklab bf16, metrics off 412000 tok/s ;sinklab bf16, metrics every step 391000 tok/s ;
LOG
python3 scripts/ab_summary.py < "$tmp/both.log" > "$tmp/both.txt"
expect_line "$tmp/both.txt" "llama, metrics off: against [defaults], paired by round"
expect_line "$tmp/both.txt" "llama, metrics every step: against [defaults], paired by round"
expect_line "$tmp/both.txt" "[defaults] 400,000, 401,000, 400,000 tok/s; its own spread over the rounds 0.25%"
expect_line "$tmp/both.txt" "[a] 404,000, 405,010 tok/s; +1.00% (rounds +1.00 to +1.00%, 2 paired); beyond the baseline's spread"
expect_line "$tmp/both.txt" "[a] 380,000, 380,250 tok/s; -2.53% (rounds -2.56 to -2.50%, 2 paired); beyond the baseline's spread"
# (2.5 - 2.743 + 3.0) / 3 = +0.919%, rounds of both signs
expect_line "$tmp/both.txt" "[b] 410,000, 390,000, 412,000 tok/s; +0.92% (rounds -2.74 to +3.00%, 3 paired); rounds disagree in sign"

# A single paired round gets no verdict; a baseline without figures in a mode is named.
cat > "$tmp/few.log" <<'LOG'
round 1 gpt2 [defaults]  sinklab bf16, metrics off 500000 tok/s ;
round 1 gpt2 [x]  sinklab bf16, metrics off 510000 tok/s ;sinklab bf16, metrics every step 480000 tok/s ;
round 2 gpt2 [defaults]  sinklab bf16, metrics off 501000 tok/s ;
LOG
python3 scripts/ab_summary.py "$tmp/few.log" > "$tmp/few.txt"
expect_line "$tmp/few.txt" "[x] 510,000 tok/s; +2.00% (rounds +2.00 to +2.00%, 1 paired)"
grep -q "1 paired);" "$tmp/few.txt" && fail "a single paired round got a verdict"
expect_line "$tmp/few.txt" "gpt2, metrics every step: no figure for the baseline [defaults]; not summarised"

# Nothing to summarise: a clear error, exit 1.
rc=0
echo "no rounds here" | python3 scripts/ab_summary.py > "$tmp/none.txt" 2>&1 || rc=$?
[ $rc -eq 1 ] || fail "an input without rounds exited $rc, not 1"
expect_line "$tmp/none.txt" "no 'round R MODEL [LABEL] ... tok/s' lines in the input"
echo "ab_summary_test: passed"
