#!/usr/bin/env python3
"""Summary of scripts/bench_ab.sh's rounds: each setting against the first, paired by round.

Reads bench_ab.sh's lines ("round R MODEL [LABEL]  sinklab bf16, metrics off N tok/s ;...") from
stdin or the files named. For each metrics mode, the first label is the baseline; every other
label's change is taken within each round (the same stretch of the call, so a drift in the
card's clocks cancels), then averaged over the rounds. Beside the mean stand the per-round
changes and, where both have two rounds or more, a verdict against the baseline's own spread
over the rounds (its largest over its smallest): a mean change no larger than that spread is
noise. The baseline is the first label of a model's first line; a mode where it has no figure
(its runs failed) is named and left out.

    bash scripts/bench_ab.sh build-gpu gpt2 'defaults||' 'x||run.a=b' | tee ab.log
    python3 scripts/ab_summary.py ab.log
"""
import re
import sys
from collections import OrderedDict

LINE = re.compile(r"^round (\d+) (\S+) \[([^\]]*)\](.*)$")
ENTRY = re.compile(r"metrics (off|every step) (\d+(?:\.\d+)?) tok/s")


def read(lines):
    """({(model, mode): {label: {round: tok/s}}}, {model: the first label seen for it})."""
    runs = OrderedDict()
    first = {}
    for line in lines:
        m = LINE.match(line.strip())
        if not m:
            continue
        rnd, model, label, rest = int(m.group(1)), m.group(2), m.group(3), m.group(4)
        first.setdefault(model, label)
        for mode, value in ENTRY.findall(rest):
            runs.setdefault((model, mode), OrderedDict()).setdefault(label, {})[rnd] = float(value)
    return runs, first


def summarise(runs, first):
    out = []
    for (model, mode), labels in runs.items():
        if first[model] not in labels:  # the baseline's runs gave no figure in this mode
            out.append(f"{model}, metrics {mode}: no figure for the baseline [{first[model]}]; "
                       f"not summarised")
            continue
        names = [first[model]] + [n for n in labels if n != first[model]]
        base = labels[names[0]]
        out.append(f"{model}, metrics {mode}: against [{names[0]}], paired by round")
        # The baseline's own spread over the rounds: the noise a change must stand out of.
        spread = 100.0 * (max(base.values()) - min(base.values())) / min(base.values())
        for name in names:
            values = labels[name]
            shown = ", ".join(f"{values[r]:,.0f}" for r in sorted(values))
            if name == names[0]:
                note = f"; its own spread over the rounds {spread:.2f}%" if len(base) > 1 else ""
                out.append(f"  [{name}] {shown} tok/s{note}")
                continue
            changes = [100.0 * (values[r] / base[r] - 1.0) for r in sorted(values) if r in base]
            if not changes:
                out.append(f"  [{name}] {shown} tok/s; no round shared with [{names[0]}]")
                continue
            mean = sum(changes) / len(changes)
            verdict = ""
            if len(base) > 1 and len(changes) > 1:
                verdict = ("; within the baseline's spread" if abs(mean) <= spread else
                           "; beyond the baseline's spread" if all(
                               (c > 0) == (mean > 0) for c in changes) else
                           "; rounds disagree in sign")
            out.append(f"  [{name}] {shown} tok/s; {mean:+.2f}% (rounds {min(changes):+.2f} "
                       f"to {max(changes):+.2f}%, {len(changes)} paired){verdict}")
    return out


def main(argv):
    lines = []
    if len(argv) > 1:
        for path in argv[1:]:
            with open(path) as f:
                lines += f.readlines()
    else:
        lines = sys.stdin.readlines()
    runs, first = read(lines)
    if not runs:
        print("ab_summary.py: no 'round R MODEL [LABEL] ... tok/s' lines in the input",
              file=sys.stderr)
        return 1
    print("\n".join(summarise(runs, first)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
