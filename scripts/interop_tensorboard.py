#!/usr/bin/env python3
"""Checks sinklab's TensorBoard event files against metrics.jsonl, and the event-file reader
against TensorBoard's own writer (docs/TENSORBOARD.md).

    python3 scripts/interop_tensorboard.py check RUN [--reader tensorboard|sinklab]
    python3 scripts/interop_tensorboard.py writer [--out DIR]

check: RUN is a run folder (runs/<name>, one folder per variant) or one variant's folder. For
every variant, the scalars of its events file equal what metrics.jsonl says they must be (tags,
steps, and values within float32 rounding). --reader tensorboard (the default) reads the folder
with TensorBoard's EventAccumulator, as TensorBoard itself does; --reader sinklab reads it with
scripts/tfevents_reader.py (protobuf and CRC-32C only: the CI test), which also requires one
events file per variant, a file_version record first, one event per metrics.jsonl line, and each
record exactly as protobuf itself would serialize it.

writer: writes scalars with torch.utils.tensorboard.SummaryWriter (TensorBoard's own
EventFileWriter) into DIR (a fresh temporary folder by default), reads the file back with
scripts/tfevents_reader.py and with EventAccumulator, and requires both to give back what was
written: the reader the CI test relies on agrees with TensorBoard's writer.

Exit codes: 0 agree, 1 a difference (each one printed), 2 usage or unreadable input, 3 a Python
module missing.
"""
import argparse
import glob
import json
import math
import os
import struct
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# The TensorBoard section of each per-step number of metrics.jsonl (tag section/name).
SECTIONS = {
    "train": ("loss", "lr", "grad_norm", "tokens_per_s", "step_ms", "mfu", "memory_mib",
              "skipped", "memory_peak_mib"),
    "val": ("val_loss", "val_loss_se"),
    "sinks": ("sink_rate", "sink_onset", "dim_disparity_mean", "dim_disparity_normed_mean",
              "effective_rank_output_mean"),
}
SECTION_OF = {name: section for section, names in SECTIONS.items() for name in names}
# Per-layer lists of lists: how each becomes one number per layer (None: not written).
NESTED = {"sink_mass": "mean", "alpha0": "mean", "massive_top": "first", "var_pos": None,
          "var_pos_normed": None}
NOT_SCALARS = ("step", "batch_hash")


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def layer_tag(name, layer, n_layers):
    width = max(2, len(str(n_layers - 1)))
    return "%s/layer_%0*d" % (name, width, layer)


def expected_scalars(jsonl_path):
    """{tag: [(step, value)]}: what the events file must hold, from metrics.jsonl."""
    out = {}

    def add(tag, step, value):
        if value is not None and math.isfinite(value):
            out.setdefault(tag, []).append((step, value))

    with open(jsonl_path) as f:
        lines = [json.loads(line) for line in f if line.strip()]
    for record in lines:
        step = record["step"]
        for key, value in record.items():
            if key in NOT_SCALARS:
                continue
            if not isinstance(value, list):
                if key not in SECTION_OF:
                    raise KeyError("%s: %r has no TensorBoard section here: add it to SECTIONS "
                                   "in %s and to docs/TENSORBOARD.md" % (jsonl_path, key, __file__))
                add("%s/%s" % (SECTION_OF[key], key), step, value)
            elif value and isinstance(value[0], list):
                if key not in NESTED:
                    raise KeyError("%s: per-layer list %r unknown here: add it to NESTED in %s and "
                                   "to docs/TENSORBOARD.md" % (jsonl_path, key, __file__))
                for layer, inner in enumerate(value):
                    finite = [v for v in inner if v is not None and math.isfinite(v)]
                    if NESTED[key] == "mean" and finite:
                        add(layer_tag(key, layer, len(value)), step, sum(finite) / len(finite))
                    elif NESTED[key] == "first" and inner:
                        add(layer_tag(key, layer, len(value)), step, inner[0])
            else:
                for layer, v in enumerate(value):
                    add(layer_tag(key, layer, len(value)), step, v)
    return out, len(lines)


def compare(expected, actual, where):
    """Differences between {tag: [(step, value)]} from metrics.jsonl and from the events file
    (values compared as float32: within 3e-7 relative, one rounding of the float's last bit)."""
    problems = []
    for tag in sorted(set(expected) - set(actual)):
        problems.append("%s: tag %s missing (%d points in metrics.jsonl)" % (where, tag, len(expected[tag])))
    for tag in sorted(set(actual) - set(expected)):
        problems.append("%s: tag %s not in metrics.jsonl" % (where, tag))
    worst = 0.0
    for tag in sorted(set(expected) & set(actual)):
        want, got = expected[tag], actual[tag]
        if [s for s, _ in want] != [s for s, _ in got]:
            problems.append("%s: %s steps %s, metrics.jsonl %s"
                            % (where, tag, [s for s, _ in got], [s for s, _ in want]))
            continue
        for (step, w), (_, g) in zip(want, got):
            w32 = f32(w)
            if not math.isclose(g, w32, rel_tol=3e-7, abs_tol=1e-38):
                problems.append("%s: %s at step %d is %r, metrics.jsonl %r" % (where, tag, step, g, w))
            elif w32 != 0:
                worst = max(worst, abs(g - w32) / abs(w32))
    return problems, worst


def variant_folders(run):
    if os.path.isfile(os.path.join(run, "metrics.jsonl")):
        return [run]
    folders = sorted(os.path.dirname(p) for p in glob.glob(os.path.join(run, "*", "metrics.jsonl")))
    if not folders:
        raise FileNotFoundError("no metrics.jsonl in %s or its subfolders" % run)
    return folders


def accumulator_scalars(folder):
    from tensorboard.backend.event_processing import event_accumulator
    acc = event_accumulator.EventAccumulator(folder, size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def sinklab_reader_scalars(folder, jsonl_lines, problems):
    """The scalars through tfevents_reader, with the structure sinklab promises."""
    import tfevents_reader
    files = sorted(glob.glob(os.path.join(folder, "events.out.tfevents.*")))
    if len(files) != 1 or not files[0].endswith(".sinklab"):
        problems.append("%s: expected one events.out.tfevents.*.sinklab file, found %s"
                        % (folder, [os.path.basename(f) for f in files]))
        if not files:
            return {}
    events = tfevents_reader.read_events(files[-1], canonical=True)
    first = events[0][2] if events else None
    if first is None or first.WhichOneof("what") != "file_version" or \
            first.file_version != tfevents_reader.FILE_VERSION:
        problems.append("%s: the first record is not file_version %s"
                        % (files[-1], tfevents_reader.FILE_VERSION))
    if len(events) - 1 != jsonl_lines:
        problems.append("%s: %d events after the file_version record, metrics.jsonl has %d lines"
                        % (files[-1], len(events) - 1, jsonl_lines))
    if tfevents_reader.crc32c_crcmod:  # the reader's own CRC, where crcmod checked the file
        for offset, data, _ in events:
            if tfevents_reader.crc32c_own(data) != tfevents_reader.crc32c_crcmod(data):
                problems.append("%s: own CRC-32C differs from crcmod's at byte %d" % (files[-1], offset))
    found = tfevents_reader.scalars(events)
    return {tag: [(s, v) for s, _, v in points] for tag, points in found.items()}


def check(args):
    status = 0
    for folder in variant_folders(args.run):
        expected, lines = expected_scalars(os.path.join(folder, "metrics.jsonl"))
        problems = []
        if args.reader == "tensorboard":
            actual = accumulator_scalars(folder)
        else:
            actual = sinklab_reader_scalars(folder, lines, problems)
        more, worst = compare(expected, actual, folder)
        problems += more
        for p in problems:
            print("FAIL " + p)
        points = sum(len(v) for v in expected.values())
        print("%s %s: %d tags, %d points over %d metrics.jsonl lines, read with %s; largest "
              "relative difference %.2g" % ("FAIL" if problems else "ok", folder, len(expected),
                                             points, lines, args.reader, worst))
        status = status or (1 if problems else 0)
    return status


def writer(args):
    import torch
    import tensorboard
    from torch.utils.tensorboard import SummaryWriter
    from tensorboard.backend.event_processing import event_accumulator
    import tfevents_reader

    out = args.out or tempfile.mkdtemp(prefix="tb_writer_")
    values = [0.0, -0.0, 1.0, -2.5, math.pi, 1e-30, 3.0e38, -7.25e-5, 123456.789]
    steps = [0, 1, 2, 127, 128, 300, 16384, 2**31 + 5, 3 * 10**12]  # 1- to 6-byte varints
    tags = ["train/loss", "sink_mass/layer_03", "val/val_loss", "t" * 200]  # a 2-byte length
    written = {}
    w = SummaryWriter(log_dir=out)
    for i, step in enumerate(steps):
        for j, tag in enumerate(tags):
            value = values[(i + j) % len(values)]
            w.add_scalar(tag, value, global_step=step, walltime=1.7e9 + i)
            written.setdefault(tag, []).append((step, f32(value)))
    w.close()
    files = sorted(glob.glob(os.path.join(out, "events.out.tfevents.*")))
    if len(files) != 1:
        print("FAIL SummaryWriter wrote %s in %s, expected one events file" % (files, out))
        return 1
    events = tfevents_reader.read_events(files[0])  # TensorBoard's bytes: not canonical here
    problems = []
    first = events[0][2]
    if first.WhichOneof("what") != "file_version" or first.file_version != tfevents_reader.FILE_VERSION:
        problems.append("the first record is %s" % first)
    ours = {tag: [(s, v) for s, _, v in points]
            for tag, points in tfevents_reader.scalars(events).items()}
    for tag in written:
        if ours.get(tag) != written[tag]:
            problems.append("tfevents_reader: %s read %s, written %s" % (tag, ours.get(tag), written[tag]))
        if [p[1] for p in tfevents_reader.scalars(events)[tag]] != [1.7e9 + i for i in range(len(steps))]:
            problems.append("tfevents_reader: %s wall times differ" % tag)
    acc = event_accumulator.EventAccumulator(out, size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    theirs = {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    if theirs != ours:
        problems.append("EventAccumulator %s, tfevents_reader %s" % (theirs, ours))
    for p in problems:
        print("FAIL " + p)
    print("%s writer: %d scalars in %d tags by torch %s SummaryWriter (tensorboard %s) in %s, "
          "%d records, CRCs checked with %s: tfevents_reader %s EventAccumulator and the values "
          "written" % ("FAIL" if problems else "ok", sum(len(v) for v in written.values()),
                       len(written), torch.__version__, tensorboard.__version__, files[0],
                       len(events), tfevents_reader.CRC_SOURCE,
                       "differs from" if problems else "agrees with"))
    return 1 if problems else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    c = sub.add_parser("check", help="events files of a run against its metrics.jsonl")
    c.add_argument("run", help="run folder (runs/<name>) or one variant's folder")
    c.add_argument("--reader", choices=("tensorboard", "sinklab"), default="tensorboard")
    w = sub.add_parser("writer", help="TensorBoard's own writer read back by tfevents_reader")
    w.add_argument("--out", help="folder for the events file (default: a new temporary one)")
    args = parser.parse_args()
    try:
        return check(args) if args.mode == "check" else writer(args)
    except ImportError as e:
        print("interop_tensorboard: %s (check --reader sinklab needs python3-protobuf; "
              "--reader tensorboard and writer need tensorboard, writer also torch)" % e,
              file=sys.stderr)
        return 3
    except (OSError, ValueError, KeyError) as e:
        print("interop_tensorboard: %s" % e, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
