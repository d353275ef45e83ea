#!/usr/bin/env python3
"""Reads `ncu --csv --metrics gpu__time_duration.sum` output on stdin (one row per kernel launch);
prints the 30 kernels that take the most GPU time, summed by name, with their share and count, so
that a note can say where a step's time goes.  argv[1] (optional): steps profiled, to divide by; argv[2]: how many kernels to list (30).
With --families (anywhere in argv) it also sums the kernels by family (GEMMs, attention, norms,
metrics, ...), the rows of docs/PERFORMANCE.md's roofline tables."""
import csv
import sys
from collections import defaultdict

UNIT_NS = {"nsecond": 1.0, "ns": 1.0, "usecond": 1e3, "us": 1e3, "msecond": 1e6, "ms": 1e6,
           "second": 1e9, "s": 1e9}
families = "--families" in sys.argv
sys.argv = [a for a in sys.argv if a != "--families"]
# Kernel families, first match wins (regular expressions over the kernel's name).
FAMILIES = [
    ("GEMMs (cuBLASLt, with their epilogues)", r"nvjet|xmma_gemm|gemm|splitKreduce|epilogue::"),
    ("attention (cuDNN)", r"cudnn|sdpa|flash"),
    ("attention (own kernels)", r"attention_(forward|backward|dq|dkdv|preprocess)"),
    ("metrics (side stream)", r"select_|whole_key|bracket_|row_statistics|attention_key_mass|"
                              r"concat_flat|prefix_bracket"),
    ("norms and their gain gradients", r"norm|LayerNormParamTerm|RmsNormGainTerm"),
    ("GELU / SwiGLU", r"gelu|swiglu"),
    ("cross-entropy", r"ce_"),
    ("RoPE", r"rope"),
    # column_finish_kernel also finishes the norms' gain sums: the family holds their share
    ("column sums: bias gradients (and the finishing kernels the norms' gains share)",
     r"LeadingSumTerm|column_finish"),
    ("residual adds and gradient sums", r"Plus|broadcast_kernel"),
    ("bf16 rounding and conversions", r"round_to_bf16|convert"),
    ("AdamW, grad norm, clipping", r"adamw|sum_squares|scale_kernel"),
    ("embedding", r"embedding"),
]
lines = [l for l in sys.stdin if l.strip()]
start = next((i for i, l in enumerate(lines) if l.startswith('"ID"')), None)
if start is None:
    sys.exit("kernel_summary: no ncu CSV table in the input (was ncu able to profile?)")
steps = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
total_ns, count = defaultdict(float), defaultdict(int)
for r in csv.DictReader(lines[start:]):
    if r.get("Metric Name") != "gpu__time_duration.sum":
        continue
    name = r["Kernel Name"].split("(")[0][:100]
    value = float(r["Metric Value"].replace(",", ""))
    total_ns[name] += value * UNIT_NS.get(r.get("Metric Unit", "ns"), 1.0)
    count[name] += 1
total = sum(total_ns.values())
print(f"GPU kernel time {total / 1e6 / steps:.2f} ms per step ({sum(count.values())} launches"
      f" over {steps:g} step(s))")
for name, t in sorted(total_ns.items(), key=lambda kv: -kv[1])[:int(sys.argv[2]) if len(sys.argv) > 2 else 30]:
    print(f"{100 * t / total:5.1f}%  {t / 1e6 / steps:8.2f} ms  {count[name] / steps:6.0f}x  {name}")
if families:
    import re
    fam_ns, fam_count = defaultdict(float), defaultdict(int)
    for name, t in total_ns.items():
        label = next((f for f, rx in FAMILIES if re.search(rx, name)), "other (fills, copies, ...)")
        fam_ns[label] += t
        fam_count[label] += count[name]
    print("by family:")
    for label, t in sorted(fam_ns.items(), key=lambda kv: -kv[1]):
        print(f"{100 * t / total:5.1f}%  {t / 1e6 / steps:8.2f} ms  {fam_count[label] / steps:6.0f}x  {label}")

