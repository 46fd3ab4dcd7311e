"""Bootstrap confidence intervals over test items (rooms, shapes, blocks) and paired comparisons.

Points of one room are not independent draws, so the unit of resampling is the item: each
resample draws n items with replacement (multinomial counts, fixed seed) and sums their
confusion matrices before dividing, exactly as the metric on the whole split does — OA,
mAcc and mIoU are ratios of sums, not means of per-item scores. The interval is the
percentile interval of the resampled metric.

`paired_difference` resamples the *same* items for two models (same data, same order) and
gives the interval of metric(A) − metric(B): a difference is "distinguishable from zero"
when that interval excludes 0. Pairing removes the variance both models share (hard rooms
are hard for both), so it resolves smaller differences than two separate intervals.

All sums are over integer counts held in float64 (exact below 2^53), so the result does not
depend on BLAS thread counts.
"""
from __future__ import annotations

import numpy as np

RESAMPLES = 1000
LEVEL = 0.95
METRICS = ("oa", "macc", "miou")
PARTNET_METRICS = ("part_miou", "shape_miou")
NOT_METRICS = ("epoch", "step", "split", "points", "lr")  # log fields that are not scores


def resample_counts(n_items: int, resamples: int = RESAMPLES, seed: int = 0) -> np.ndarray:
    """(resamples, n_items) float64: how often each item is drawn in each resample."""
    if n_items < 1 or resamples < 1:
        raise ValueError(f"need ≥ 1 item and ≥ 1 resample, got {n_items} and {resamples}")
    idx = np.random.default_rng(seed).integers(0, n_items, size=(resamples, n_items))
    flat = idx + np.arange(resamples)[:, None] * n_items
    return np.bincount(flat.ravel(), minlength=resamples * n_items).reshape(
        resamples, n_items).astype(np.float64)


def confusion_metrics(mats: np.ndarray) -> dict[str, np.ndarray]:
    """OA, mAcc, mIoU of confusion matrices `(…, C, C)` (rows truth), by ConfusionMatrix's
    rules: classes absent from the truth do not count in mAcc, empty unions not in mIoU."""
    m = np.asarray(mats, np.float64)
    tp = np.diagonal(m, axis1=-2, axis2=-1)
    gt, pred = m.sum(-1), m.sum(-2)
    total = gt.sum(-1)
    union = gt + pred - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        oa = np.where(total > 0, tp.sum(-1) / np.maximum(total, 1), 0.0)
        acc = np.where(gt > 0, tp / gt, np.nan)
        iou = np.where(union > 0, tp / union, np.nan)
    return {"oa": oa, "macc": _nanmean0(acc), "miou": _nanmean0(iou)}


def _nanmean0(x: np.ndarray) -> np.ndarray:
    """Mean over the last axis ignoring NaN; 0 where every entry is NaN."""
    valid = ~np.isnan(x)
    n = valid.sum(-1)
    return np.where(n > 0, np.where(valid, x, 0.0).sum(-1) / np.maximum(n, 1), 0.0)


def _interval(samples: np.ndarray, level: float) -> tuple[float, float]:
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def partnet_metrics(counts: np.ndarray, parts: dict) -> dict[str, np.ndarray]:
    """PartNet's part and shape mIoU (metrics.PartNetIoU's rule) of weighted shapes: `counts`
    (R, n) over the shapes of `parts` = {inter (n, C), union (n, C), shape_iou (n,), NaN for
    a shape without parts}."""
    w = np.asarray(counts, np.float64)
    inter, union = w @ parts["inter"], w @ parts["union"]
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / np.maximum(union, 1), np.nan)
    iou[:, 0] = np.nan  # label 0 ("other") is not a part
    shape = np.asarray(parts["shape_iou"], np.float64)
    has = ~np.isnan(shape)
    n = w[:, has].sum(1)
    shape_miou = np.where(n > 0, w[:, has] @ shape[has] / np.maximum(n, 1), 0.0)
    return {"part_miou": _nanmean0(iou), "shape_miou": shape_miou}


def _statistic(items) -> tuple[int, callable, tuple[str, ...]]:
    """(n_items, counts → metrics, metric names) of per-item confusion matrices
    `(n, C, C)` or PartNet's per-shape record (see `partnet_metrics`)."""
    if isinstance(items, dict):
        return len(items["inter"]), lambda w: partnet_metrics(w, items), PARTNET_METRICS
    items = np.asarray(items)
    flat, c = items.reshape(len(items), -1).astype(np.float64), items.shape[-1]
    return (len(items), lambda w: confusion_metrics((w @ flat).reshape(len(w), c, c)),
            METRICS)


def bootstrap_ci(items, resamples: int = RESAMPLES, seed: int = 0,
                 level: float = LEVEL) -> dict:
    """Per metric {value, low, high} from per-item confusion matrices `(n_items, C, C)` (or
    PartNet's per-shape record)."""
    n, stat, names = _statistic(items)
    value = stat(np.ones((1, n)))
    boot = stat(resample_counts(n, resamples, seed))
    out = {k: dict(zip(("value", "low", "high"),
                       (float(value[k][0]), *_interval(boot[k], level)))) for k in names}
    return {**out, "items": n, "resamples": resamples, "seed": seed, "level": level}


def paired_difference(items_a, items_b, resamples: int = RESAMPLES, seed: int = 0,
                      level: float = LEVEL) -> dict:
    """Per metric {a, b, delta (A − B), low, high, distinguishable}: the same resampled
    items for both models."""
    na, stat_a, names = _statistic(items_a)
    nb, stat_b, _ = _statistic(items_b)
    shapes = [np.shape(x if not isinstance(x, dict) else x["inter"]) for x in (items_a, items_b)]
    if shapes[0] != shapes[1] or type(items_a) is not type(items_b):
        raise ValueError(f"the two evaluations have different items: {shapes[0]} vs "
                         f"{shapes[1]}")
    counts = resample_counts(na, resamples, seed)
    ones = np.ones((1, na))
    va, vb = stat_a(ones), stat_b(ones)
    ba, bb = stat_a(counts), stat_b(counts)
    out = {}
    for k in names:
        low, high = _interval(ba[k] - bb[k], level)
        out[k] = {"a": float(va[k][0]), "b": float(vb[k][0]),
                  "delta": float(va[k][0] - vb[k][0]), "low": low, "high": high,
                  "distinguishable": bool(low > 0 or high < 0)}
    return {**out, "items": na, "resamples": resamples, "seed": seed, "level": level}


def bootstrap_mean(values: np.ndarray, resamples: int = RESAMPLES, seed: int = 0,
                   level: float = LEVEL) -> dict:
    """{value, low, high} of the mean of per-item `values` (same resampling as above)."""
    v = np.asarray(values, np.float64)
    counts = resample_counts(len(v), resamples, seed)
    low, high = _interval(counts @ v / len(v), level)
    return {"value": float(v.mean()), "low": low, "high": high}


def seed_summary(finals: dict[int, dict]) -> dict:
    """Mean ± sample standard deviation (ddof 1; None with one seed) over training runs of
    one recipe, per final validation metric and for the best key metric. `finals`: seed →
    the trainer's final record (metrics.json)."""
    seeds = sorted(finals)
    last = [finals[s]["last"] or {} for s in seeds]
    names = [k for k, v in last[0].items() if k not in NOT_METRICS
             and isinstance(v, (int, float)) and all(k in row for row in last)]

    def stats(values):
        v = np.asarray(values, np.float64)
        return {"values": [float(x) for x in v], "mean": float(v.mean()),
                "std": float(v.std(ddof=1)) if len(v) > 1 else None}

    key = finals[seeds[0]]["key_metric"]
    return {"seeds": seeds, "std_ddof": 1,
            "final_validation": {k: stats([row[k] for row in last]) for k in names},
            "best_" + key: stats([finals[s]["best"][key] for s in seeds])}
