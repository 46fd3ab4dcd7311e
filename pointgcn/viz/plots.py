"""Result plots as PNG (matplotlib Agg, object API: no pyplot, no global backend switch).

Training curves read a run folder's `metrics.jsonl`, one JSON object per line:

    {"epoch": 1, "step": 120, "split": "train", "loss": 0.93, "oa": 0.71, "miou": 0.42, "lr": 0.001}

- "split" (string, required): "train", "val", "test", … — one line per split in each plot;
- "epoch" and/or "step" (numbers): the x axis is "step" when every record has it, else "epoch";
- every other numeric key is a metric and gets its own subplot (loss first, lr last); keys
  "time", "timestamp", "elapsed", "wall_time" and non-numeric values are ignored; a record may
  carry any subset of metrics. Blank lines are skipped; a malformed line is an error naming it.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..errors import FormatError, InputError
from ..io.atomic import atomic_path

METRICS_FILE = "metrics.jsonl"
_NOT_METRICS = {"epoch", "step", "split", "time", "timestamp", "elapsed", "wall_time"}
DPI = 100


def _figure(size):
    # lazy: matplotlib takes ≈0.4 s to import, and segment/classify use viz without drawing
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(size[0] / DPI, size[1] / DPI), dpi=DPI, facecolor="white")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, out_png) -> Path:
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=DPI, format="png", facecolor="white")
    return out_png


def read_metrics(source) -> list[dict]:
    """Metric records from a run folder, a .jsonl file, or an iterable of dicts (validated)."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            path = path / METRICS_FILE
        if not path.is_file():
            raise InputError(f"{path}: no such metrics file")
        records = []
        for i, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise FormatError(f"{path}:{i}: not a JSON object ({e.msg})") from None
        where = str(path)
    else:
        records, where = list(source), "metric records"
    for i, r in enumerate(records, 1):
        if not isinstance(r, dict) or not isinstance(r.get("split"), str):
            raise FormatError(f"{where}: record {i} is not an object with a string 'split'")
        if not any(k in r for k in ("epoch", "step")):
            raise FormatError(f"{where}: record {i} has neither 'epoch' nor 'step'")
    if not records:
        raise InputError(f"{where}: no metric records")
    return records


def _metric_keys(records: list[dict]) -> list[str]:
    keys: list[str] = []
    for r in records:
        for k, v in r.items():
            if k not in _NOT_METRICS and k not in keys and isinstance(v, (int, float)) \
                    and not isinstance(v, bool):
                keys.append(k)
    return sorted(keys, key=lambda k: (k != "loss", k == "lr", keys.index(k)))


def plot_training_curves(source, out_png, *, metrics: list[str] | None = None,
                         title: str | None = None, size=(1200, 800)) -> Path:
    """One subplot per metric, one line per split; `source` as for `read_metrics`."""
    records = read_metrics(source)
    keys = metrics or _metric_keys(records)
    if not keys:
        raise InputError("metric records hold no numeric metric to plot")
    x_key = "step" if all("step" in r for r in records) else "epoch"
    splits = list(dict.fromkeys(r["split"] for r in records))
    fig = _figure(size)
    ncol = min(3, len(keys))
    nrow = math.ceil(len(keys) / ncol)
    for i, key in enumerate(keys):
        ax = fig.add_subplot(nrow, ncol, i + 1)
        for color, split in enumerate(splits):  # a split keeps its colour in every subplot
            rows = [r for r in records if r["split"] == split and x_key in r
                    and isinstance(r.get(key), (int, float))]
            if rows:
                xs, ys = [r[x_key] for r in rows], [r[key] for r in rows]
                ax.plot(xs, ys, marker="o" if split != "train" else None, ms=3, lw=1.4, label=split,
                        color=f"C{color}")
        ax.set_title(key)
        ax.set_xlabel(x_key)
        ax.grid(alpha=0.3)
        if key == "loss" or key == "lr":
            positive = all(r[key] > 0 for r in records if key in r)
            ax.set_yscale("log" if positive else "linear")
        ax.legend(fontsize=8)
    fig.suptitle(title or "training curves")
    fig.tight_layout()
    return _save(fig, out_png)


def plot_class_iou(ious, class_names, out_png, *, title: str | None = None,
                   size=(1000, 520)) -> Path:
    """Per-class IoU bars (NaN = class absent, marked n/a) with the mean IoU as a line."""
    ious = np.asarray(ious, np.float64)
    names = list(class_names) if class_names is not None else [str(i) for i in range(len(ious))]
    if ious.ndim != 1 or len(names) != len(ious):
        raise InputError(f"{len(ious)} IoU values for {len(names)} class names")
    miou = float(np.nanmean(ious)) if np.isfinite(ious).any() else float("nan")
    fig = _figure(size)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(ious))
    ax.bar(x, np.nan_to_num(ious), color="tab:blue")
    ax.axhline(miou, color="tab:orange", ls="--", label=f"mIoU {miou:.3f}")
    for xi, v in zip(x, ious):
        if len(ious) <= 25:
            ax.text(xi, (0 if np.isnan(v) else v) + 0.01, "n/a" if np.isnan(v) else f"{v:.2f}",
                    ha="center", va="bottom", fontsize=7)
    many = len(names) > 8
    ax.set_xticks(x, names, rotation=45 if many else 0, ha="right" if many else "center")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("IoU")
    ax.legend(loc="upper right")
    ax.set_title(title or f"per-class IoU (mIoU {miou:.3f})")
    fig.tight_layout()
    return _save(fig, out_png)


LAYER_METRICS = (("group_distance_ratio", "group distance ratio"),
                 ("instance_information_gain", "instance information gain (bits)"),
                 ("dirichlet_energy", "Dirichlet energy"), ("effective_rank", "effective rank"))


def plot_layer_diagnostics(runs: dict[str, list[dict]], out_png, *, title: str | None = None,
                           size=(1000, 700)) -> Path:
    """Over-smoothing diagnostics per layer (pointgcn.engine.analyze), one line per model in
    `runs` ({label: per-layer records}), one panel per metric."""
    if not runs or not all(runs.values()):
        raise InputError("no layer diagnostics to plot")
    fig = _figure(size)
    for i, (key, label) in enumerate(LAYER_METRICS):
        ax = fig.add_subplot(2, 2, i + 1)
        for name, rows in runs.items():
            ax.plot([r["layer"] for r in rows], [r[key] for r in rows], marker="o", ms=3,
                    label=name)
        ax.set_xlabel("layer")
        ax.set_title(label, fontsize=10)
        if key == "dirichlet_energy":
            ax.set_yscale("symlog", linthresh=1e-3)
        if i == 0:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, out_png)


def plot_confusion(matrix, class_names, out_png, *, normalize: bool = True,
                   title: str | None = None, size=(900, 820)) -> Path:
    """Confusion matrix, rows = ground truth; rows normalised to sum 1 (empty rows stay 0)."""
    m = np.asarray(matrix, np.float64)
    names = list(class_names) if class_names is not None else [str(i) for i in range(len(m))]
    if m.ndim != 2 or m.shape[0] != m.shape[1] or len(names) != len(m):
        raise InputError(f"confusion matrix must be K×K with K class names, got {m.shape} "
                         f"and {len(names)}")
    acc = float(np.trace(m) / m.sum()) if m.sum() > 0 else float("nan")
    shown = m / np.maximum(m.sum(1, keepdims=True), 1e-12) if normalize else m
    fig = _figure(size)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None,
                   interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ticks = np.arange(len(m))
    ax.set_xticks(ticks, names, rotation=90 if len(m) > 6 else 0, fontsize=8)
    ax.set_yticks(ticks, names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    if len(m) <= 20:
        top = shown.max() if shown.size else 1
        for (i, j), v in np.ndenumerate(shown):
            ax.text(j, i, f"{v:.2f}" if normalize else f"{v:g}", ha="center", va="center",
                    fontsize=7, color="white" if v > 0.6 * top else "black")
    kind = " (rows normalised)" if normalize else ""
    ax.set_title(title or f"confusion matrix{kind}, OA {acc:.3f}")
    fig.tight_layout()
    return _save(fig, out_png)


def mape(measured, predicted) -> float:
    """Mean absolute percentage error of predictions against measurements, in percent."""
    measured, predicted = np.asarray(measured, np.float64), np.asarray(predicted, np.float64)
    if measured.shape != predicted.shape or measured.size == 0:
        raise InputError(f"{measured.size} measurements but {predicted.size} predictions")
    if np.any(measured <= 0):
        raise InputError("measured latencies must be positive")
    return float(np.mean(np.abs(predicted - measured) / measured) * 100)


def plot_latency_fit(measured_ms, predicted_ms, out_png, *, title: str | None = None,
                     size=(700, 650)) -> Path:
    """The latency regressor's predicted vs measured scatter, the y = x line, MAPE in the title."""
    err = mape(measured_ms, predicted_ms)
    meas, pred = np.asarray(measured_ms, float), np.asarray(predicted_ms, float)
    fig = _figure(size)
    ax = fig.add_subplot(1, 1, 1)
    ax.scatter(meas, pred, s=14, alpha=0.8, color="tab:blue", label="models")
    lo, hi = float(min(meas.min(), pred.min())), float(max(meas.max(), pred.max()))
    pad = 0.05 * (hi - lo or 1)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", lw=1, label="y = x")
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_aspect("equal")
    ax.set_xlabel("measured latency (ms)")
    ax.set_ylabel("predicted latency (ms)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    ax.set_title(title or f"latency predicted vs measured: MAPE {err:.1f}% (n={meas.size})")
    fig.tight_layout()
    return _save(fig, out_png)


def pareto_front(latency, accuracy) -> np.ndarray:
    """Indices of models no other model beats (lower-or-equal latency and higher-or-equal
    accuracy, strictly better in one), ordered by latency; exact duplicates appear once."""
    lat, acc = np.asarray(latency, np.float64), np.asarray(accuracy, np.float64)
    if lat.shape != acc.shape:
        raise InputError(f"{lat.size} latencies but {acc.size} accuracies")
    order = np.lexsort((-acc, lat))  # by latency, best accuracy first among equal latencies
    front, best = [], -np.inf
    for i in order:
        if acc[i] > best:
            front.append(int(i))
            best = acc[i]
    return np.asarray(front, np.int64)


def plot_pareto(latency_ms, accuracy, out_png, *, names: list[str] | None = None,
                accuracy_label: str = "accuracy", title: str | None = None,
                size=(800, 600)) -> Path:
    """Accuracy vs latency of searched models; the Pareto front highlighted and joined."""
    lat, acc = np.asarray(latency_ms, float), np.asarray(accuracy, float)
    front = pareto_front(lat, acc)
    fig = _figure(size)
    ax = fig.add_subplot(1, 1, 1)
    ax.scatter(lat, acc, s=16, color="0.6", label="models")
    ax.step(lat[front], acc[front], where="post", color="tab:red", lw=1.2)
    ax.scatter(lat[front], acc[front], s=40, color="tab:red", zorder=3, label="Pareto front")
    if names is not None:
        for i in front:
            ax.annotate(str(names[i]), (lat[i], acc[i]), textcoords="offset points", xytext=(4, 4),
                        fontsize=7)
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel(accuracy_label)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title(title or f"{accuracy_label} vs latency "
                          f"({len(front)} of {len(lat)} models on the front)")
    fig.tight_layout()
    return _save(fig, out_png)
