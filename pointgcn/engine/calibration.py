"""Calibrated confidence: temperature scaling (Guo et al. 2017) and expected calibration error.

A network trained with cross-entropy is often over-confident: its top softmax probability is
higher than its accuracy. One scalar T > 0, fitted on held-out logits by minimising the
negative log-likelihood of softmax(z / T), fixes much of that without changing a single
label (argmax is unchanged by dividing by T). The checkpoint's meta stores T
(`temperature`); every predictor divides its logits by it, so downstream probabilities are
the calibrated ones.

ECE: points binned by confidence (top probability) into `bins` equal-width bins on (0, 1];
ECE = Σ_b (n_b / n) · |accuracy_b − mean confidence_b|. `ReliabilityBins` accumulates the
per-bin counts over batches, so ECE of a whole test split needs no logits kept in memory.

Everything here is float64 numpy with a bounded scalar search, so the same logits give the
same T at any thread count.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

from ..errors import FormatError

LOG_T_BOUNDS = (np.log(0.02), np.log(50.0))  # T from 0.02 to 50: beyond is a broken model
DEFAULT_BINS = 15


def temperature_of(meta: dict | None) -> float:
    """The temperature a checkpoint's (or ONNX file's) meta records; 1.0 when it records none
    (models trained before calibration, official weights). A recorded value that is not a
    finite positive number is refused: dividing by it would corrupt every probability."""
    value = (meta or {}).get("temperature")
    if value is None:
        return 1.0
    try:
        t = float(value)
    except (TypeError, ValueError):
        t = float("nan")
    if not (np.isfinite(t) and t > 0):
        raise FormatError(f"the model records temperature {value!r}; it must be a finite "
                          "number > 0")
    return t


def flatten_logits(logits: np.ndarray, labels: np.ndarray,
                   ignore_index: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(M, C) logits and (M,) labels from `(B, C[, N])` logits and `(B[, N])` labels, with
    points labelled < 0 (unlabelled) or `ignore_index` left out."""
    z = np.asarray(logits, np.float64)
    y = np.asarray(labels).astype(np.int64)
    if z.ndim == 3:
        z = z.transpose(0, 2, 1).reshape(-1, z.shape[1])
    y = y.reshape(-1)
    if len(z) != len(y):
        raise ValueError(f"{len(z)} logit rows but {len(y)} labels")
    keep = (y >= 0) & (y < z.shape[1])
    if ignore_index is not None:
        keep &= y != ignore_index
    return z[keep], y[keep]


def softmax(z: np.ndarray, temperature: float = 1.0, axis: int = 1) -> np.ndarray:
    z = np.asarray(z, np.float64) / temperature
    z = z - z.max(axis, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis, keepdims=True)


def nll(z: np.ndarray, y: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of labels `y` under softmax(z / T); z (M, C)."""
    s = np.asarray(z, np.float64) / temperature
    m = s.max(1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(s - m).sum(1))
    return float(np.mean(lse - s[np.arange(len(y)), y]))


def fit_temperature(logits: np.ndarray, labels: np.ndarray,
                    ignore_index: int | None = None) -> float:
    """T minimising the NLL of softmax(logits / T) on labelled points (labels < 0 ignored).
    Logits `(M, C)` with labels `(M,)`, or `(B, C, N)` with `(B, N)`. 1.0 with no labels."""
    z, y = flatten_logits(logits, labels, ignore_index)
    if not len(y):
        return 1.0
    res = minimize_scalar(lambda t: nll(z, y, float(np.exp(t))), bounds=LOG_T_BOUNDS,
                          method="bounded", options={"xatol": 1e-6})
    return float(np.exp(res.x))


class ReliabilityBins:
    """Per-bin counts, summed confidence and correct predictions, accumulated over batches."""

    def __init__(self, bins: int = DEFAULT_BINS):
        if bins < 1:
            raise ValueError(f"bins must be ≥ 1, got {bins}")
        self.bins = bins
        self.count = np.zeros(bins, np.int64)
        self.confidence = np.zeros(bins, np.float64)
        self.correct = np.zeros(bins, np.int64)

    def update_probs(self, probs: np.ndarray, labels: np.ndarray) -> "ReliabilityBins":
        """`probs` (M, C) with labels (M,) already filtered (see `flatten_logits`)."""
        probs = np.asarray(probs, np.float64)
        conf = probs.max(1)
        right = probs.argmax(1) == np.asarray(labels)
        # bin b holds confidences in (b/B, (b+1)/B]; confidence is never below 1/C > 0
        idx = np.clip(np.ceil(conf * self.bins).astype(np.int64) - 1, 0, self.bins - 1)
        self.count += np.bincount(idx, minlength=self.bins)
        self.confidence += np.bincount(idx, weights=conf, minlength=self.bins)
        self.correct += np.bincount(idx, weights=right, minlength=self.bins).astype(np.int64)
        return self

    def update(self, logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0,
               ignore_index: int | None = None) -> "ReliabilityBins":
        z, y = flatten_logits(logits, labels, ignore_index)
        return self.update_probs(softmax(z, temperature), y)

    def __iadd__(self, other: "ReliabilityBins") -> "ReliabilityBins":
        self.count += other.count
        self.confidence += other.confidence
        self.correct += other.correct
        return self

    def ece(self) -> float:
        n = self.count.sum()
        if n == 0:
            return 0.0
        used = self.count > 0
        gap = np.abs(self.correct[used] / self.count[used]
                     - self.confidence[used] / self.count[used])
        return float((self.count[used] / n * gap).sum())

    @classmethod
    def from_table(cls, rows: list[dict], bins: int) -> "ReliabilityBins":
        """Bins back from `table()` rows (each bin's sums are points × its means)."""
        out = cls(bins)
        for r in rows:
            b = int(round(r["low"] * bins))
            out.count[b] += r["points"]
            out.confidence[b] += r["points"] * r["confidence"]
            out.correct[b] += int(round(r["points"] * r["accuracy"]))
        return out

    def table(self) -> list[dict]:
        """One row per non-empty bin: its range, points, accuracy, mean confidence."""
        rows = []
        for b in np.flatnonzero(self.count):
            n = int(self.count[b])
            rows.append({"low": b / self.bins, "high": (b + 1) / self.bins, "points": n,
                         "accuracy": float(self.correct[b] / n),
                         "confidence": float(self.confidence[b] / n)})
        return rows


def ece(probs: np.ndarray, labels: np.ndarray, bins: int = DEFAULT_BINS) -> float:
    """Expected calibration error of probabilities `(M, C)` against labels `(M,)`."""
    z, y = np.asarray(probs, np.float64), np.asarray(labels).astype(np.int64)
    keep = (y >= 0) & (y < z.shape[1])
    return ReliabilityBins(bins).update_probs(z[keep], y[keep]).ece()


def at_bound(temperature: float) -> bool:
    """Whether a fitted T sits at an end of its search range: at the top, the logits carry
    next to no information on those points (uniform is as good); at the bottom, they are far
    too timid. Either way the model, not its calibration, needs attention."""
    lo, hi = np.exp(LOG_T_BOUNDS[0]), np.exp(LOG_T_BOUNDS[1])
    return bool(temperature >= hi * (1 - 1e-3) or temperature <= lo * (1 + 1e-3))


def calibration_report(logits: np.ndarray, labels: np.ndarray, temperature: float,
                       bins: int = DEFAULT_BINS) -> dict:
    """ECE and NLL of `logits` (raw, as the network gives them) before and after dividing by
    `temperature`; `at_bound` when T sits at an end of the search range."""
    z, y = flatten_logits(logits, labels)
    before = ReliabilityBins(bins).update_probs(softmax(z), y)
    after = ReliabilityBins(bins).update_probs(softmax(z, temperature), y)
    return {"temperature": float(temperature), "at_bound": at_bound(temperature),
            "points": int(len(y)), "bins": bins,
            "ece_before": before.ece(), "ece_after": after.ece(),
            "nll_before": nll(z, y) if len(y) else None,
            "nll_after": nll(z, y, temperature) if len(y) else None}


class BeforeAfter:
    """Reliability bins of a predictor's logits (already divided by `temperature`) and of the
    network's raw ones (× temperature), accumulated over an evaluation."""

    def __init__(self, temperature: float = 1.0, bins: int = DEFAULT_BINS):
        self.temperature = float(temperature)
        self.before, self.after = ReliabilityBins(bins), ReliabilityBins(bins)

    def update(self, logits: np.ndarray, labels: np.ndarray) -> None:
        z, y = flatten_logits(logits, labels)
        self.after.update_probs(softmax(z), y)
        self.before.update_probs(softmax(z * self.temperature), y)

    def record(self) -> dict:
        return {"temperature": self.temperature, "points": int(self.after.count.sum()),
                "bins": self.after.bins, "ece_before": self.before.ece(),
                "ece_after": self.after.ece(), "reliability_before": self.before.table(),
                "reliability": self.after.table()}


def pool_records(records: list[dict]) -> dict:
    """One calibration record over several evaluations (S3DIS's six folds, each model with its
    own temperature): the bins summed, so ECE weighs every point once. `temperature` is the
    points-weighted geometric mean, for display; `temperatures` lists each one."""
    bins = records[0]["bins"]
    if any(r["bins"] != bins for r in records):
        raise ValueError(f"calibration records with different bins "
                         f"({sorted({r['bins'] for r in records})}) cannot be pooled")
    before, after = ReliabilityBins(bins), ReliabilityBins(bins)
    for r in records:
        before += ReliabilityBins.from_table(r["reliability_before"], bins)
        after += ReliabilityBins.from_table(r["reliability"], bins)
    points = np.array([r["points"] for r in records], np.float64)
    temps = [float(r["temperature"]) for r in records]
    mean_t = float(np.exp(np.average(np.log(temps), weights=points))) if points.sum() else 1.0
    return {"temperature": mean_t, "temperatures": temps, "points": int(points.sum()),
            "bins": bins, "ece_before": before.ece(), "ece_after": after.ece(),
            "reliability_before": before.table(), "reliability": after.table()}
