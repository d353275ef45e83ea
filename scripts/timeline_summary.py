"""Summarises an nsys cuda_gpu_trace CSV (scripts/timeline_gpu.sh): for the last training step
(from the last cross-entropy forward kernel of a training forward to the end of the trace), the
busy time of each stream, the time both streams were busy, and the time no kernel ran."""
import csv
import sys


def intervals_union(spans):
    spans = sorted(spans)
    out = []
    for s, e in spans:
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return out


def total(spans):
    return sum(e - s for s, e in spans)


def intersect(a, b):
    i = j = 0
    got = 0
    while i < len(a) and j < len(b):
        s, e = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if s < e:
            got += e - s
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return got


rows = list(csv.DictReader(open(sys.argv[1])))
start_key = next(k for k in rows[0] if k.startswith("Start"))
dur_key = next(k for k in rows[0] if k.startswith("Duration"))
kernels = [r for r in rows if r.get("Name") and r.get(dur_key)]
# Every forward starts with an embedding_forward kernel: one segment per forward (a training
# step's forward, backward, update and metrics, or a validation pass), up to the next one.
marks = [i for i, r in enumerate(kernels) if "embedding_forward" in r["Name"]] or [0]
for n, first in enumerate(marks):
    seg = kernels[first:marks[n + 1]] if n + 1 < len(marks) else kernels[first:]
    t0 = float(seg[0][start_key])
    t1 = max(float(r[start_key]) + float(r[dur_key]) for r in seg)
    by_stream = {}
    for r in seg:
        s0 = float(r[start_key])
        by_stream.setdefault(r.get("Strm", r.get("Stream", "?")), []).append(
            (s0, s0 + float(r[dur_key])))
    unions = {k: intervals_union(v) for k, v in by_stream.items()}
    allu = intervals_union([x for v in by_stream.values() for x in v])
    print(f"segment {n}: {(t1 - t0) / 1e6:.2f} ms from its first kernel to its last, "
          f"{len(seg)} kernels, no kernel running {((t1 - t0) - total(allu)) / 1e6:.2f} ms")
    streams = sorted(unions, key=lambda k: -total(unions[k]))
    for k in streams:
        u = unions[k]
        print(f"  stream {k}: {len(by_stream[k])} kernels, busy {total(u) / 1e6:.2f} ms, "
              f"first at +{(u[0][0] - t0) / 1e6:.2f} ms, last ends +{(u[-1][1] - t0) / 1e6:.2f} ms")
    if len(streams) >= 2:
        both = intersect(unions[streams[0]], unions[streams[1]])
        print(f"  the two busiest streams both busy: {both / 1e6:.2f} ms")
