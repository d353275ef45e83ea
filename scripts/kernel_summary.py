#!/usr/bin/env python3
"""Reads `nsys stats --report cuda_gpu_kern_sum --format csv` on stdin; prints the 25 kernels
that take the most GPU time, with their share, so that a note can say where a step's time goes."""
import csv
import sys

lines = [l for l in sys.stdin if l.strip()]
start = next((i for i, l in enumerate(lines) if l.startswith('"Time') or l.startswith("Time")), None)
if start is None:
    sys.exit("kernel_summary: no kernel table in the input")
rows = list(csv.DictReader(lines[start:]))
total = sum(float(r["Total Time (ns)"]) for r in rows)
print(f"GPU kernel time {total / 1e6:.1f} ms over the profiled steps")
for r in sorted(rows, key=lambda r: -float(r["Total Time (ns)"]))[:25]:
    t = float(r["Total Time (ns)"])
    print(f"{100 * t / total:5.1f}%  {t / 1e6:9.2f} ms  {int(r['Instances']):6d}x  {r['Name'][:110]}")
