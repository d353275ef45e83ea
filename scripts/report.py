#!/usr/bin/env python3
"""Plots and an HTML page for one sinklab run: every variant side by side.

    python3 scripts/report.py runs/<name> [--out DIR]

Reads runs/<name>/<variant>/metrics.h5 (or metrics.jsonl where there is no HDF5 file, or h5py is
missing) for every variant folder, and writes PNG plots, summary.json and a self-contained
index.html (no scripts, no external URLs; the PNGs sit next to it) to runs/<name>/report/ or DIR.
Metric definitions: docs/SINKS.md. Needs matplotlib (Agg backend) and numpy; h5py optional.
Exit codes: 0 written, 1 bad input (missing run folder, no metrics), 2 usage, 3 missing modules.
"""
import argparse
import datetime
import glob
import html
import json
import math
import os
import re
import sys
import warnings

REEXEC_GUARD = "SINKLAB_REPORT_REEXEC"


def import_plotting():
    """matplotlib + numpy, or a clear error. Where this interpreter lacks them (a pyenv or venv
    python3 first on PATH) and the system's /usr/bin/python3 differs, run under that one."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker  # noqa: F401 (used as matplotlib.ticker)
        import numpy as np
        return matplotlib, plt, np
    except ImportError as e:
        system = "/usr/bin/python3"
        if (not os.environ.get(REEXEC_GUARD) and os.path.exists(system)
                and os.path.realpath(sys.executable) != os.path.realpath(system)):
            os.environ[REEXEC_GUARD] = "1"
            os.execv(system, [system] + sys.argv)
        print(f"report: {e} (with {sys.executable}); install python3-matplotlib python3-h5py "
              f"(Debian/Ubuntu) or `pip install matplotlib h5py`", file=sys.stderr)
        sys.exit(3)


matplotlib, plt, np = import_plotting()
try:
    os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")  # readable while a run still writes
    import h5py
except ImportError:
    h5py = None

# Per-position metrics can be large (steps x layers x T): only the rows a plot needs are read.
PER_POSITION = ("var_pos", "var_pos_normed")


class ReportError(Exception):
    pass


# ----------------------------------------------------------------------------------------------
# Loading


class Variant:
    """One variant's metrics: `series[key]` is an array with one row per logged record (NaN where
    a value was not logged); `last_positions(key)` gives the newest row of a per-position metric."""

    def __init__(self, name, folder):
        self.name = name
        self.folder = folder
        self.series = {}
        self.source = None
        self._h5path = None
        self._last_pos = {}  # jsonl: key -> (row, array) for the newest row that has it
        self.config = read_text(os.path.join(folder, "config.yaml"))

    def __len__(self):
        return len(self.series.get("step", ()))

    def get(self, key):
        return self.series.get(key)

    def last_positions(self, key):
        """(row, array (layers, T)) of a per-position metric at the newest training row that
        logged it (else the newest row at all), or None. From HDF5 only candidate rows are read
        (those whose scalar companion, var_ratio or var_ratio_normed, is finite): a long run's
        var_pos is steps x layers x T and far too large to load whole."""
        if self._h5path is None:
            return self._last_pos.get(key)
        companion = self.get("var_ratio_normed" if key.endswith("_normed") else "var_ratio")
        n = len(self)
        if companion is not None:
            finite = np.isfinite(companion.reshape(n, -1)).any(axis=1)
        else:
            finite = np.ones(n, bool)
        train = training_mask(self)
        candidates = list(np.flatnonzero(finite & train)[::-1][:8])
        candidates += list(np.flatnonzero(finite & ~train)[::-1][:2])
        with h5py.File(self._h5path, "r") as f:
            if key not in f or f[key].ndim != 3:
                return None
            d = f[key]
            for row in candidates:
                if row < d.shape[0]:
                    a = np.asarray(d[int(row)], dtype=float)
                    if np.isfinite(a).any():
                        return int(row), a
        return None

    def cfg(self, key, default=None):
        return config_value(self.config, key, default)


def read_text(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def config_value(text, key, default=None):
    """A scalar `key: value` from a resolved sinklab config.yaml (first match; no YAML module)."""
    m = re.search(r"^\s*" + re.escape(key) + r":\s*([^#\n]*?)\s*(?:#.*)?$", text, re.M)
    if not m or m.group(1) in ("", "[]", "{}"):
        return default
    return m.group(1).strip("\"'")


def load_h5(v, path):
    with h5py.File(path, "r") as f:
        for key, d in f.items():
            if not isinstance(d, h5py.Dataset) or d.dtype.kind not in "fiub":
                continue
            if key in PER_POSITION:
                continue
            v.series[key] = np.asarray(d[()], dtype=float)
    if "step" not in v.series:
        raise ReportError(f"{path}: no 'step' dataset")
    n = len(v.series["step"])
    for key, a in list(v.series.items()):  # a run that stopped mid-write: cut to the shortest
        n = min(n, a.shape[0] if a.ndim else 0)
    for key in v.series:
        v.series[key] = v.series[key][:n]
    v._h5path = path
    v.source = path


def to_array(value):
    try:
        a = np.array(value, dtype=float)  # None -> NaN
    except (TypeError, ValueError):
        return None
    return a


def load_jsonl(v, path):
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line being written right now
    rows = [r for r in rows if isinstance(r, dict) and isinstance(r.get("step"), (int, float))]
    n = len(rows)
    shapes = {}
    for r in rows:
        for key, value in r.items():
            if key in shapes or value is None or isinstance(value, str) or key in PER_POSITION:
                continue
            a = to_array(value)
            if a is not None and np.isfinite(a).any():
                shapes[key] = a.shape
    for key, shape in shapes.items():
        out = np.full((n,) + shape, np.nan)
        for i, r in enumerate(rows):
            a = to_array(r.get(key))
            if a is not None and a.shape == shape:
                out[i] = a
        v.series[key] = out
    if "step" not in v.series:
        v.series["step"] = np.zeros(0)
    for key in PER_POSITION:  # only the newest logged training row is kept
        best = None
        for i, r in enumerate(rows):
            a = to_array(r.get(key)) if r.get(key) is not None else None
            if a is not None and a.ndim == 2 and np.isfinite(a).any():
                if best is None or is_training(r) or not is_training(rows[best[0]]):
                    best = (i, a)
        if best:
            v._last_pos[key] = best
    v.source = path


def is_training(r):
    return r.get("lr") is not None or r.get("loss") is not None


def load_variant(name, folder):
    v = Variant(name, folder)
    h5 = os.path.join(folder, "metrics.h5")
    jl = os.path.join(folder, "metrics.jsonl")
    errors = []
    if h5py is not None and os.path.isfile(h5):
        try:
            load_h5(v, h5)
        except (OSError, KeyError, ValueError, ReportError) as e:
            errors.append(f"{h5}: {e}")
            v = Variant(name, folder)
    if v.source is None and os.path.isfile(jl):
        load_jsonl(v, jl)
    if v.source is None:
        if errors:
            print(f"report: warning: {errors[0]}", file=sys.stderr)
        return None
    if len(v) == 0:
        print(f"report: warning: {v.source} holds no records; variant {name} left out",
              file=sys.stderr)
        return None
    return v


def variant_order(run_dir, names):
    """The order of the run config's `variants:` list, then the rest (baseline first)."""
    text = read_text(os.path.join(run_dir, "config.yaml"))
    listed = []
    m = re.search(r"^variants:\s*$(.*)", text, re.M | re.S)
    if m:
        listed = re.findall(r"^\s*-\s*name:\s*['\"]?([^'\"\s#]+)", m.group(1), re.M)
    rank = {n: i for i, n in enumerate(listed)}
    return sorted(names, key=lambda n: (rank.get(n, len(rank)), n != "baseline", n))


def load_run(run_dir):
    if not os.path.isdir(run_dir):
        raise ReportError(f"no run folder at {run_dir}")
    metric_files = ("metrics.h5", "metrics.jsonl")
    if any(os.path.isfile(os.path.join(run_dir, m)) for m in metric_files):
        candidates = {os.path.basename(os.path.abspath(run_dir)): run_dir}  # a variant folder
    else:
        candidates = {}
        for entry in sorted(os.listdir(run_dir)):
            sub = os.path.join(run_dir, entry)
            if os.path.isdir(sub) and any(os.path.isfile(os.path.join(sub, m))
                                          for m in metric_files):
                candidates[entry] = sub
    variants = []
    for name in variant_order(run_dir, list(candidates)):
        v = load_variant(name, candidates[name])
        if v is not None:
            variants.append(v)
    if not variants:
        raise ReportError(f"no metrics in {run_dir} (expected <variant>/metrics.h5 or "
                          f"<variant>/metrics.jsonl with at least one record)")
    return variants


# ----------------------------------------------------------------------------------------------
# Derived quantities


def training_mask(v):
    """Training steps: lr is logged. The final evaluation record has loss and lr null."""
    lr = v.get("lr")
    loss = v.get("loss")
    if lr is not None:
        mask = np.isfinite(lr)
    elif loss is not None:
        mask = np.isfinite(loss)
    else:
        mask = np.ones(len(v), bool)
    return mask if mask.any() else np.ones(len(v), bool)


def logged_rows(v, key):
    """Training rows where `key` holds a finite value (any layer/head)."""
    a = v.get(key)
    if a is None:
        return np.zeros(0, int)
    finite = np.isfinite(a.reshape(len(a), -1)).any(axis=1) if a.ndim > 1 else np.isfinite(a)
    return np.flatnonzero(finite & training_mask(v))


def last_metrics_row(v):
    rows = logged_rows(v, "sink_mass")
    if len(rows) == 0:
        rows = logged_rows(v, "var_ratio")
    return int(rows[-1]) if len(rows) else None


def last_finite_row(v, key):
    """The last record (training or final evaluation) where `key` holds a finite value."""
    a = v.get(key)
    if a is None:
        return None
    finite = np.isfinite(a.reshape(len(a), -1)).any(axis=1) if a.ndim > 1 else np.isfinite(a)
    rows = np.flatnonzero(finite)
    return int(rows[-1]) if len(rows) else None


def nanmean(a, axis=None):
    a = np.asarray(a, dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices give NaN
        return float(np.nanmean(a)) if axis is None else np.nanmean(a, axis=axis)


def nanmax(a):
    a = np.asarray(a, dtype=float)
    return float(np.nanmax(a)) if np.isfinite(a).any() else math.nan


def row_value(v, key, row, reduce):
    a = v.get(key)
    if a is None or row is None or row >= len(a):
        return math.nan
    return reduce(a[row])


def block_size(variants):
    for v in variants:
        t = v.cfg("block_size")
        if t and t.isdigit():
            return int(t)
    return None


def uniform_sink_level(T):
    """Mean over queries t>=1 of A[t,0] under uniform causal attention: mean of 1/(t+1)."""
    if not T or T < 2:
        return None
    return sum(1.0 / (t + 1) for t in range(1, T)) / (T - 1)


def summarize(v):
    train = training_mask(v)
    steps = v.get("step")
    loss = v.get("loss")
    s = {"variant": v.name, "source": v.source,
         "attn_output_norm": v.cfg("attn_output_norm", "?"),
         "steps": int(train.sum()),
         "last_step": int(np.nanmax(steps[train])) if train.any() else None}
    tl = loss[train & np.isfinite(loss)] if loss is not None else np.zeros(0)
    s["final_train_loss"] = float(np.mean(tl[-10:])) if len(tl) else math.nan
    vl = v.get("val_loss")
    vfin = np.flatnonzero(np.isfinite(vl)) if vl is not None else np.zeros(0, int)
    s["best_val_loss"] = float(np.min(vl[vfin])) if len(vfin) else math.nan
    s["final_val_loss"] = float(vl[vfin[-1]]) if len(vfin) else math.nan
    s["final_val_step"] = int(steps[vfin[-1]]) if len(vfin) else None
    row = last_metrics_row(v)
    s["metrics_step"] = int(steps[row]) if row is not None else None
    s["sink_mass"] = row_value(v, "sink_mass", row, nanmean)
    s["sink_rate"] = row_value(v, "sink_rate", row, lambda x: float(x))
    s["var_ratio"] = row_value(v, "var_ratio", row, nanmean)
    s["var_ratio_normed"] = row_value(v, "var_ratio_normed", row, nanmean)
    s["dim_disparity_max"] = row_value(v, "dim_disparity", row, nanmax)
    s["super_ratio_max"] = row_value(v, "super_ratio", row, nanmax)
    s["sink_onset"] = row_value(v, "sink_onset", row, lambda x: float(x))
    s["dim_disparity_mean"] = row_value(v, "dim_disparity_mean", row, lambda x: float(x))
    s["dim_disparity_normed_mean"] = row_value(v, "dim_disparity_normed_mean", row,
                                               lambda x: float(x))
    erow = last_finite_row(v, "effective_rank_output_mean")
    s["effective_rank_output_mean"] = row_value(v, "effective_rank_output_mean", erow,
                                                lambda x: float(x))
    se = v.get("val_loss_se")
    s["final_val_loss_se"] = float(se[vfin[-1]]) if se is not None and len(vfin) else math.nan
    tps = v.get("tokens_per_s")
    tps = tps[train & np.isfinite(tps)] if tps is not None else np.zeros(0)
    s["tokens_per_s_median"] = float(np.median(tps)) if len(tps) else math.nan
    return s


def read_val_losses(v, step):
    """The variant's final evaluation batch by batch (<variant>/val_losses.json, written at the
    end of a run) when it is the evaluation at `step` with every loss finite, else None."""
    try:
        with open(os.path.join(v.folder, "val_losses.json"), encoding="utf-8") as f:
            d = json.load(f)
    except (OSError, ValueError):
        return None
    losses = d.get("losses")
    if d.get("step") != step or not losses or any(x is None for x in losses):
        return None
    return d


def add_paired_differences(variants, summaries):
    """Each variant's final val loss minus the first variant's, with the paired standard error
    over their common validation batches (the standard error of the batch-by-batch differences,
    as the run's closing console line computes it): only where both val_losses.json files
    belong to the final evaluations and name the same batches; None elsewhere."""
    first = read_val_losses(variants[0], summaries[0]["final_val_step"])
    for v, s in zip(variants, summaries):
        s["val_loss_minus_first"] = s["val_loss_minus_first_se"] = None
        s["paired_batches"] = None
        mine = read_val_losses(v, s["final_val_step"])
        if v is variants[0] or first is None or mine is None:
            continue
        if (mine["batches_hash"] != first["batches_hash"]
                or len(mine["losses"]) != len(first["losses"])):
            continue
        d = np.asarray(mine["losses"], float) - np.asarray(first["losses"], float)
        s["val_loss_minus_first"] = float(mine["loss"] - first["loss"])
        s["val_loss_minus_first_se"] = (float(np.std(d, ddof=1) / math.sqrt(len(d)))
                                        if len(d) > 1 else math.nan)
        s["paired_batches"] = len(d)


# ----------------------------------------------------------------------------------------------
# Plots

COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]


def color_of(i):
    return COLORS[i % len(COLORS)]


def layer_colors(L):
    cmap = matplotlib.colormaps["viridis"] if hasattr(matplotlib, "colormaps") \
        else plt.get_cmap("viridis")
    return [cmap(0.85 * i / max(L - 1, 1)) for i in range(L)]


def thin(x, y, limit=2000):
    """Averages consecutive points into at most `limit` bins (long runs, readable lines)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if len(x) <= limit:
        return x, y
    k = int(math.ceil(len(x) / limit))
    n = len(x) // k * k
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN bins stay NaN
        return x[:n].reshape(-1, k).mean(axis=1), np.nanmean(y[:n].reshape((-1, k) + y.shape[1:]),
                                                             axis=1)


def ema(y, span):
    out = np.empty_like(y)
    a = 2.0 / (span + 1)
    m = None
    for i, val in enumerate(y):
        if np.isfinite(val):
            m = val if m is None else a * val + (1 - a) * m
        out[i] = np.nan if m is None else m
    return out


def save(fig, out_dir, name):
    path = os.path.join(out_dir, name)
    tmp = os.path.join(out_dir, f".{name}.tmp")
    fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
    return name


def no_data(fig_or_ax, text):
    ax = fig_or_ax
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4",
            wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])


def placeholder(out_dir, name, title, text):
    fig, ax = plt.subplots(figsize=(8, 2.5))
    ax.set_title(title)
    no_data(ax, text)
    return save(fig, out_dir, name)


def plot_loss(variants, out_dir):
    fig, ax = plt.subplots(figsize=(10, 5.5))
    drew = False
    for i, v in enumerate(variants):
        train = training_mask(v)
        steps, loss = v.get("step"), v.get("loss")
        if loss is not None:
            m = train & np.isfinite(loss)
            x, y = thin(steps[m], loss[m])
            if len(x):
                drew = True
                if len(x) > 100:
                    ax.plot(x, y, color=color_of(i), alpha=0.3, lw=0.8)
                    ax.plot(x, ema(y, max(5, len(x) // 50)), color=color_of(i), lw=1.8,
                            label=f"{v.name} train (EMA)")
                else:
                    ax.plot(x, y, color=color_of(i), lw=1.5, label=f"{v.name} train")
        vl = v.get("val_loss")
        if vl is not None:
            m = np.isfinite(vl)
            if m.any():
                drew = True
                ax.plot(steps[m], vl[m], ls="--", lw=1, marker="o", ms=6, color=color_of(i),
                        markeredgecolor="black", label=f"{v.name} val")
    ax.set_title("Loss: train (lines) and validation (markers)")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy loss (nats/token)")
    if drew:
        ax.legend()
        ax.grid(alpha=0.3)
    else:
        no_data(ax, "no loss logged")
    fig.tight_layout()
    return save(fig, out_dir, "loss.png")


def step_edges(x):
    x = np.asarray(x, dtype=float)
    if len(x) == 1:
        return np.array([x[0] - 0.5, x[0] + 0.5])
    mid = (x[1:] + x[:-1]) / 2
    return np.concatenate([[x[0] - (mid[0] - x[0])], mid, [x[-1] + (x[-1] - mid[-1])]])


def plot_sink_heatmap(variants, out_dir, T):
    maps = []
    for v in variants:
        rows = logged_rows(v, "sink_mass")
        if len(rows) == 0:
            maps.append(None)
            continue
        per_layer = nanmean(v.get("sink_mass")[rows], axis=2)  # mean over heads: (rows, L)
        x, m = thin(v.get("step")[rows], per_layer, limit=1500)
        maps.append((x, m))
    if all(m is None for m in maps):
        return placeholder(out_dir, "sink_mass.png", "Sink mass by layer and step",
                           "no sink_mass logged (metrics.every = 0?)")
    vmax = max(nanmax(m[1]) for m in maps if m is not None)
    vmax = vmax if np.isfinite(vmax) and vmax > 0 else 1.0
    L = max(m[1].shape[1] for m in maps if m is not None)
    fig, axes = plt.subplots(1, len(variants), figsize=(5.5 * len(variants) + 1.5,
                                                        1.2 + 0.45 * L + 2), squeeze=False)
    im = None
    for ax, v, m in zip(axes[0], variants, maps):
        ax.set_title(v.name)
        if m is None:
            no_data(ax, "no sink_mass logged")
            continue
        x, z = m
        im = ax.pcolormesh(step_edges(x), np.arange(z.shape[1] + 1) - 0.5, z.T, vmin=0,
                           vmax=vmax, cmap="magma", shading="flat")
        ax.set_xlabel("step")
        ax.set_ylabel("layer")
        ax.set_yticks(range(z.shape[1]))
    uni = uniform_sink_level(T)
    label = "attention on key 0 (mean over heads, queries t≥1)"
    if uni:
        label += f"\nuniform attention: {uni:.3f}"
    fig.colorbar(im, ax=list(axes[0]), label=label, fraction=0.04, pad=0.02)
    fig.suptitle("Sink mass by layer and step (shared colour scale)")
    return save(fig, out_dir, "sink_mass.png")


def plot_sink_rate(variants, out_dir, T, threshold):
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(13, 4.8))
    drew = False
    for i, v in enumerate(variants):
        rows = logged_rows(v, "sink_rate")
        if len(rows):
            drew = True
            x, y = thin(v.get("step")[rows], v.get("sink_rate")[rows])
            a1.plot(x, y, color=color_of(i), lw=1.5, label=v.name)
        rows = logged_rows(v, "sink_mass")
        if len(rows):
            x, y = thin(v.get("step")[rows], nanmean(v.get("sink_mass")[rows], axis=(1, 2)))
            a2.plot(x, y, color=color_of(i), lw=1.5, label=v.name)
    a1.set_title(f"Sink rate: % of (layer, head) with α0 > {threshold}")
    a1.set_xlabel("step")
    a1.set_ylabel("sink rate (%)")
    a1.set_ylim(-3, 103)
    a2.set_title("Mean sink mass over layers and heads")
    a2.set_xlabel("step")
    a2.set_ylabel("attention on key 0")
    uni = uniform_sink_level(T)
    if uni:
        a2.axhline(uni, color="0.5", ls=":", lw=1, label=f"uniform attention ({uni:.3f})")
    if drew:
        for a in (a1, a2):
            a.grid(alpha=0.3)
            a.legend()
    else:
        no_data(a1, "no sink_rate logged")
    fig.tight_layout()
    return save(fig, out_dir, "sink_rate.png")


def plot_var_pos(variants, out_dir):
    curves = []  # per variant: (step, {key: array (L, T)})
    for v in variants:
        got = {}
        step = None
        for key in PER_POSITION:
            found = v.last_positions(key)
            if found is not None:
                row, a = found
                got[key] = a
                if key == "var_pos" or step is None:
                    step = int(v.get("step")[row])
        curves.append((step, got))
    if not any(g for _, g in curves):
        return placeholder(out_dir, "var_pos.png", "Variance of the attention output by position",
                           "no var_pos logged (metrics.every = 0?)")
    L = max(g[k].shape[0] for _, g in curves for k in g)
    layers = sorted({0, L // 2, L - 1})
    fig, axes = plt.subplots(1, len(layers), figsize=(5.2 * len(layers), 4.8), squeeze=False)
    for ax, layer in zip(axes[0], layers):
        for i, (v, (step, g)) in enumerate(zip(variants, curves)):
            normed = "var_pos_normed" in g and layer < g["var_pos_normed"].shape[0]
            for key in PER_POSITION:
                if key not in g or layer >= g[key].shape[0]:
                    continue
                y = g[key][layer]
                x = np.arange(1, len(y) + 1)
                ok = np.isfinite(y) & (y > 0)
                if not ok.any():
                    continue
                if key == "var_pos":
                    label = f"{v.name} (before norm)" if normed else v.name
                    style = dict(ls="--", lw=1.2, alpha=0.8) if normed else dict(ls="-", lw=1.6)
                else:
                    label = f"{v.name} (after head-wise RMSNorm)"
                    style = dict(ls="-", lw=1.6)
                ax.plot(x[ok], y[ok], color=color_of(i), label=f"{label}, step {step}", **style)
        log_axis(ax, "x")
        log_axis(ax, "y")
        ax.set_title(f"layer {layer}")
        ax.set_xlabel("position t + 1")
        ax.set_ylabel("variance over channels of attention output")
        ax.grid(alpha=0.3, which="both")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Variance of the attention output by position, last logged training step")
    fig.tight_layout()
    return save(fig, out_dir, "var_pos.png")


def plot_paper_layers(variants, out_dir, onset_threshold, T):
    """The paper's per-layer readings at the last logged step (docs/METRICS.md)."""
    specs = [("sink_score", "sink score (paper)\nmean over heads and all queries of A[t, 0]"),
             ("dim_disparity_normed", "dimension disparity of the first token\n"
                                      "solid: after the input norm; dashed: before"),
             ("effective_rank_output", "effective rank of the layer output\n"
                                       "solid: mean over sequences; dashed: input, one sequence")]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8), squeeze=False)
    for ax, (key, ylabel) in zip(axes[0], specs):
        drawn = False
        for i, v in enumerate(variants):
            row = last_finite_row(v, key) if key == "effective_rank_output" \
                else last_metrics_row(v)
            companion = {"dim_disparity_normed": "dim_disparity",
                         "effective_rank_output": "effective_rank"}.get(key)
            for k, style in ((key, dict(ls="-", lw=1.6, marker="o")),
                             (companion, dict(ls="--", lw=1.2, marker="."))):
                a = v.get(k) if k else None
                if a is None or row is None or a.ndim != 2 or not np.isfinite(a[row]).any():
                    continue
                label = f"{v.name}, step {int(v.get('step')[row])}" if k == key else None
                ax.plot(np.arange(a.shape[1]), a[row], color=color_of(i), label=label, **style)
                drawn = True
        if key == "sink_score" and drawn:
            ax.axhline(onset_threshold, color="red", ls=":", lw=1,
                       label=f"onset threshold {onset_threshold:g}")
            if T:
                ax.axhline(sum(1.0 / (t + 1) for t in range(T)) / T, color="0.5", ls=":", lw=1,
                           label=f"uniform attention, T={T}")
        if not drawn:
            no_data(ax, f"no {key} logged")
        ax.set_xlabel("layer")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    fig.suptitle("The paper's readings by layer (docs/METRICS.md)")
    fig.tight_layout()
    return save(fig, out_dir, "paper_layers.png")


def find_random_token_probes(run_dir, variants):
    """(variant name, probe JSON) of `sinklab probe --random-tokens N` files in the run folder."""
    found = []
    for v in variants:
        paths = sorted(glob.glob(os.path.join(run_dir, v.name, "**", "*.json"), recursive=True))
        for path in paths:
            try:
                with open(path, encoding="utf-8") as f:
                    probe = json.load(f)
            except (OSError, ValueError):
                continue
            if isinstance(probe, dict) and probe.get("var_across") and probe.get("random_tokens"):
                found.append((v.name, path, probe))
    return found


def plot_var_across(run_dir, variants, out_dir):
    probes = find_random_token_probes(run_dir, variants)
    if not probes:
        return placeholder(out_dir, "var_across.png",
                           "Across-sample variance of the input to W_O against 1/(t+1)",
                           "no probe on random tokens in this run folder: run\n"
                           "sinklab probe <variant>/ckpt/step_N.h5 --random-tokens 200")
    L = max(len(p["var_across"]) for _, _, p in probes)
    layers = sorted({0, L // 2, L - 1})
    fig, axes = plt.subplots(1, len(layers), figsize=(5.2 * len(layers), 4.8), squeeze=False)
    for ax, layer in zip(axes[0], layers):
        ref_drawn = False
        for i, (name, path, p) in enumerate(probes):
            if layer >= len(p["var_across"]):
                continue
            y = np.array(p["var_across"][layer], dtype=float)
            x = np.arange(1, len(y) + 1)
            ok = np.isfinite(y) & (y > 0)
            if not ok.any():
                continue
            step = (p.get("metrics") or {}).get("step")
            ax.plot(x[ok], y[ok], color=color_of(i), lw=1.6,
                    label=f"{name}, step {step}, {p['random_tokens']} random sequences")
            if ok[0] and not ref_drawn:
                ax.plot(x, y[0] / x, color="0.45", ls=":", lw=1.3,
                        label=f"1/(t+1) law, matched at t=0 of {name}")
                ref_drawn = True
        log_axis(ax, "x")
        log_axis(ax, "y")
        ax.set_title(f"layer {layer}")
        ax.set_xlabel("position t + 1")
        ax.set_ylabel("variance across samples, mean over dims")
        ax.grid(alpha=0.3, which="both")
        if ax.lines:
            ax.legend(fontsize=7)
    fig.suptitle("The 1/(t+1) law: across-sample variance of the input to W_O on uniform-random "
                 "tokens (sinklab probe --random-tokens)")
    fig.tight_layout()
    return save(fig, out_dir, "var_across.png")


def log_axis(ax, which="y"):
    """Log scale with plain labels at 1, 2, 5 x 10^k (readable over less than a decade too)."""
    axis = ax.yaxis if which == "y" else ax.xaxis
    (ax.set_yscale if which == "y" else ax.set_xscale)("log")
    axis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def set_log_if_positive(ax, arrays):
    vals = [a[np.isfinite(a)] for a in arrays if a is not None]
    vals = np.concatenate(vals) if vals else np.zeros(0)
    if len(vals) and (vals > 0).all():
        log_axis(ax)


def plot_layer_stats(variants, out_dir):
    rows_spec = [("var_ratio", "var_ratio\nVar(o_0) / mean Var(o_t≥1)", True),
                 ("dim_disparity", "dim_disparity\nmax|x0| / mean|x0|", False),
                 ("norm_ratio", "norm_ratio\n‖x0‖ / mean ‖x_t≥1‖", False)]
    n = len(variants)
    fig, axes = plt.subplots(3, n, figsize=(5.5 * n + 1, 10.5), squeeze=False, sharex="col",
                             sharey="row")
    L = max((v.get(k).shape[1] for v in variants for k, _, _ in rows_spec
             if v.get(k) is not None and v.get(k).ndim == 2), default=1)
    colors = layer_colors(L)
    for r, (key, ylabel, log) in enumerate(rows_spec):
        seen = []
        for c, v in enumerate(variants):
            ax = axes[r][c]
            if r == 0:
                ax.set_title(v.name)
            rows = logged_rows(v, key)
            if len(rows) == 0:
                no_data(ax, f"no {key} logged")
                continue
            x, y = thin(v.get("step")[rows], v.get(key)[rows])
            seen.append(y)
            for layer in range(y.shape[1]):
                ax.plot(x, y[:, layer], color=colors[layer], lw=1.3, label=f"layer {layer}")
            if key == "var_ratio":
                nrows = logged_rows(v, "var_ratio_normed")
                if len(nrows):
                    xn, yn = thin(v.get("step")[nrows], v.get("var_ratio_normed")[nrows])
                    seen.append(yn)
                    for layer in range(yn.shape[1]):
                        ax.plot(xn, yn[:, layer], color=colors[layer], lw=1.3, ls="--")
                    ax.plot([], [], color="0.3", ls="--", label="after head-wise RMSNorm")
            if key in ("var_ratio", "norm_ratio"):
                ax.axhline(1.0, color="0.5", ls=":", lw=1)
            ax.grid(alpha=0.3, which="both")
            if r == 2:
                ax.set_xlabel("step")
            if c == 0:
                ax.set_ylabel(ylabel)
            if c == 0 or key == "var_ratio":
                ax.legend(fontsize=7, ncol=2 if L > 6 else 1)
        if log:
            set_log_if_positive(axes[r][0], seen)
    fig.suptitle("Per-layer statistics of the first token over steps (dotted: parity, 1)")
    fig.tight_layout()
    return save(fig, out_dir, "layer_stats.png")


def plot_super_ratio(variants, out_dir):
    n = len(variants)
    fig, axes = plt.subplots(1, n, figsize=(5.5 * n + 1, 4.8), squeeze=False, sharey="row")
    L = max((v.get("super_ratio").shape[1] for v in variants
             if v.get("super_ratio") is not None and v.get("super_ratio").ndim == 2), default=1)
    colors = layer_colors(L)
    seen = []
    for ax, v in zip(axes[0], variants):
        ax.set_title(v.name)
        rows = logged_rows(v, "super_ratio")
        if len(rows) == 0:
            no_data(ax, "no super_ratio logged")
            continue
        x, y = thin(v.get("step")[rows], v.get("super_ratio")[rows])
        seen.append(y)
        for layer in range(y.shape[1]):
            ax.plot(x, y[:, layer], color=colors[layer], lw=1.3, label=f"layer {layer}")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3, which="both")
    if seen and nanmax(np.concatenate([s.ravel() for s in seen])) > 300:
        for ax in axes[0]:
            ax.axhline(1000, color="red", ls=":", lw=1, label="1000× median (massive)")
    set_log_if_positive(axes[0][0], seen)
    axes[0][0].set_ylabel("|u[0, n*]| / median |u|")
    for ax in axes[0]:
        if ax.lines:
            ax.legend(fontsize=7, ncol=2 if L > 6 else 1)
    fig.suptitle("Super-neuron activation ratio: first token's largest FFN activation over the "
                 "median")
    fig.tight_layout()
    return save(fig, out_dir, "super_ratio.png")


# ----------------------------------------------------------------------------------------------
# HTML

CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 2em auto;
       max-width: 1400px; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
.meta { color: #666; font-size: 0.9em; margin-bottom: 1.5em; }
table { border-collapse: collapse; font-size: 0.9em; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.35em 0.7em; text-align: right; }
th { background: #f2f2f2; } td:first-child, th:first-child { text-align: left; }
figure { margin: 2em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #444; font-size: 0.95em; margin-top: 0.4em; }
pre { background: #f7f7f7; padding: 1em; overflow-x: auto; font-size: 0.85em; }
.note { color: #666; font-size: 0.85em; }
"""


def fmt(x, digits=4):
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if isinstance(x, int):
        return f"{x:,}"
    return f"{x:.{digits}f}"


def fmt_layer(x):
    if x is None or not math.isfinite(x):
        return "–"
    return "none" if x < 0 else f"{int(x)}"


def paired_cell(s):
    if s.get("val_loss_minus_first") is None:
        return "–"
    return (f'{s["val_loss_minus_first"]:+.4f} ± {fmt(s["val_loss_minus_first_se"])} '
            f'({s["paired_batches"]} batches)')


def summary_table(summaries):
    first = html.escape(summaries[0]["variant"]) if summaries else ""
    cols = [("variant", lambda s: html.escape(s["variant"])),
            ("attn output norm", lambda s: html.escape(str(s["attn_output_norm"]))),
            ("steps", lambda s: fmt(s["steps"])),
            ("final train loss", lambda s: fmt(s["final_train_loss"])),
            ("best val loss", lambda s: fmt(s["best_val_loss"])),
            ("final val loss", lambda s: fmt(s["final_val_loss"])),
            ("± s.e.", lambda s: fmt(s.get("final_val_loss_se"))),
            (f"final val loss − {first} ± paired s.e.", paired_cell),
            ("metrics at step", lambda s: fmt(s["metrics_step"])),
            ("sink mass", lambda s: fmt(s["sink_mass"])),
            ("sink rate (%)", lambda s: fmt(s["sink_rate"], 1)),
            ("var_ratio pre", lambda s: fmt(s["var_ratio"], 2)),
            ("var_ratio post", lambda s: fmt(s["var_ratio_normed"], 2)),
            ("max dim_disparity", lambda s: fmt(s["dim_disparity_max"], 1)),
            ("max super_ratio", lambda s: fmt(s["super_ratio_max"], 1)),
            ("sink onset layer (paper)", lambda s: fmt_layer(s.get("sink_onset"))),
            ("dim_disparity layer mean (before / after norm)",
             lambda s: f'{fmt(s.get("dim_disparity_mean"), 1)} / '
                       f'{fmt(s.get("dim_disparity_normed_mean"), 1)}'),
            ("eff. rank of outputs, layer mean", lambda s: fmt(s.get("effective_rank_output_mean"),
                                                               1)),
            ("tokens/s (median)", lambda s: fmt(s["tokens_per_s_median"], 0))]
    out = ["<table>", "<tr>" + "".join(f"<th>{c}</th>" for c, _ in cols) + "</tr>"]
    for s in summaries:
        out.append("<tr>" + "".join(f"<td>{f(s)}</td>" for _, f in cols) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def write_html(out_dir, run_name, run_dir, variants, summaries, plots, threshold):
    figures = []
    for name, caption in plots:
        figures.append(f'<figure id="{html.escape(name[:-4])}"><img src="{html.escape(name)}" '
                       f'alt="{html.escape(caption)}"><figcaption>{html.escape(caption)}'
                       f"</figcaption></figure>")
    config = read_text(os.path.join(run_dir, "config.yaml"))
    sources = "".join(f"<li>{html.escape(v.name)}: {html.escape(v.source)} ({len(v)} records)"
                      "</li>" for v in variants)
    now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    doc = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>sinklab report: {html.escape(run_name)}</title>
<style>{CSS}</style>
</head>
<body>
<h1>sinklab report: {html.escape(run_name)}</h1>
<div class="meta">{html.escape(os.path.abspath(run_dir))} &middot; {len(variants)} variant(s):
{", ".join(html.escape(v.name) for v in variants)} &middot; generated {now}</div>
<h2>Summary</h2>
{summary_table(summaries)}
<p class="note">Final train loss: mean of the last 10 training steps. Sink metrics are those of
the last training step that logged them (mean over layers and heads for sink mass; mean over
layers for var_ratio, before and after head-wise RMSNorm; max over layers for dim_disparity and
super_ratio). Sink rate: % of (layer, head) whose mean attention on key 0 exceeds {threshold}.
Paired difference: the final val loss minus the first variant's, with the standard error of
their batch-by-batch differences on the same validation batches (each variant's
val_losses.json); – where a variant's final evaluation is missing or saw other batches.
Definitions: docs/SINKS.md and docs/METRICS.md.</p>
<h2>Plots</h2>
{chr(10).join(figures)}
<h2>Sources</h2>
<ul>{sources}</ul>
<details><summary>Run config (config.yaml)</summary>
<pre>{html.escape(config) if config else "(no config.yaml)"}</pre>
</details>
</body>
</html>
"""
    path = os.path.join(out_dir, "index.html")
    tmp = os.path.join(out_dir, ".index.html.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(doc)
    os.replace(tmp, path)
    return path


def json_safe(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def main(argv=None):
    p = argparse.ArgumentParser(description="Plots and an HTML report of a sinklab run.")
    p.add_argument("run_dir", help="a run folder, e.g. runs/quickstart")
    p.add_argument("--out", help="output folder (default: <run_dir>/report)")
    a = p.parse_args(argv)
    run_dir = a.run_dir.rstrip("/") or "/"
    try:
        variants = load_run(run_dir)
    except ReportError as e:
        print(f"report: {e}", file=sys.stderr)
        return 1
    out_dir = a.out or os.path.join(run_dir, "report")
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:
        print(f"report: cannot create {out_dir}: {e}", file=sys.stderr)
        return 1
    run_config = read_text(os.path.join(run_dir, "config.yaml"))
    run_name = config_value(run_config, "name") or os.path.basename(os.path.abspath(run_dir))
    threshold = config_value(run_config, "sink_threshold") or variants[0].cfg("sink_threshold",
                                                                              "0.3")
    onset_threshold = float(config_value(run_config, "onset_threshold")
                            or variants[0].cfg("onset_threshold", "0.8"))
    T = block_size(variants)
    if T is None:
        for v in variants:
            found = v.last_positions("var_pos")
            if found is not None:
                T = found[1].shape[1]
                break
    names = ", ".join(v.name for v in variants)
    plots = [
        (plot_loss(variants, out_dir),
         "Training loss per step (thin: raw; thick: moving average on long runs) and validation "
         "loss at each evaluation (markers), per variant."),
        (plot_sink_heatmap(variants, out_dir, T),
         "Sink mass: mean attention of queries t≥1 on key 0, averaged over heads, for each layer "
         "(rows) and step (columns); one panel per variant, one colour scale."),
        (plot_sink_rate(variants, out_dir, T, threshold),
         f"Left: share of (layer, head) pairs whose attention on key 0 exceeds {threshold} "
         "(Gu et al.'s sink rate); right: sink mass averaged over layers and heads against "
         "the uniform-attention level."),
        (plot_var_pos(variants, out_dir),
         "Variance of the attention output (before W_O) by position at the last logged step for "
         "the first, middle and last layer, log-log; head-wise RMSNorm variants show the "
         "variance before (dashed) and after (solid) the norm. This is a variance over channels "
         "within each sequence, not the paper's 1/(t+1) law (a variance across samples: see "
         "var_across.png)."),
        (plot_var_across(run_dir, variants, out_dir),
         "The paper's 1/(t+1) law: for each position, the variance across samples of each "
         "dimension of the input to W_O, averaged over dimensions, on uniform-random tokens "
         "(from sinklab probe --random-tokens N); dotted: 1/(t+1), matched at t=0."),
        (plot_paper_layers(variants, out_dir, onset_threshold, T),
         "The paper's readings by layer at the last logged step: sink score over all queries "
         "with the onset threshold; dimension disparity after (solid) and before (dashed) each "
         "block's input norm; effective rank of each layer's output over sequences (solid, last "
         "evaluation) and of its input for one sequence (dashed)."),
        (plot_layer_stats(variants, out_dir),
         "Per layer over steps: variance discrepancy var_ratio (dashed: after head-wise "
         "RMSNorm), dimension disparity of the first token's hidden state, and the first "
         "token's norm over the mean norm of the others."),
        (plot_super_ratio(variants, out_dir),
         "Super-neuron ratio per layer: the first token's largest FFN intermediate activation "
         "over the median |activation| of all tokens and neurons (massive above ~1000)."),
    ]
    summaries = [summarize(v) for v in variants]
    add_paired_differences(variants, summaries)
    summary_path = os.path.join(out_dir, "summary.json")
    tmp = os.path.join(out_dir, ".summary.json.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump([{k: json_safe(x) for k, x in s.items()} for s in summaries], f, indent=1)
        f.write("\n")
    os.replace(tmp, summary_path)
    index = write_html(out_dir, run_name, run_dir, variants, summaries, plots, threshold)
    print(f"report: {len(plots)} plots for {names} -> {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
