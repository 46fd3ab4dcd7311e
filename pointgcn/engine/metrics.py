"""Metrics from one confusion matrix (rows = ground truth, columns = prediction).

OA = Σ diag / Σ all;  mAcc = mean over classes present in the ground truth of recall;
IoU_c = TP / (TP + FP + FN), mIoU = mean over classes with a non-empty union (absent classes
that are also never predicted do not count; predicted-but-absent ones count as IoU 0).
S3DIS 6-fold adds the six test areas' matrices before dividing. PartNet follows its own rule,
see `PartNetIoU`.

Both metric classes share one interface: `predict(logits)` (labels the way the metric wants
them), `update(pred, target)`, `summary(names)`, `state()` / `load_state(state)` (picklable
running state, for mid-epoch checkpoints) and `all_reduce(d)` (the metric over every process).
"""
from __future__ import annotations

import numpy as np

from .distributed import Dist, gather_objects, sum_array


class ConfusionMatrix:
    def __init__(self, n_classes: int, ignore_index: int | None = None):
        self.n = n_classes
        self.ignore_index = ignore_index
        self.matrix = np.zeros((n_classes, n_classes), dtype=np.int64)

    @staticmethod
    def predict(logits: np.ndarray) -> np.ndarray:
        """Labels from logits `(…, n_classes[, N])`: argmax over classes."""
        return np.asarray(logits).argmax(1)

    def update(self, pred, target) -> "ConfusionMatrix":
        pred = np.asarray(pred).reshape(-1).astype(np.int64)
        target = np.asarray(target).reshape(-1).astype(np.int64)
        keep = (target >= 0) & (target < self.n)
        if self.ignore_index is not None:
            keep &= target != self.ignore_index
        pred, target = pred[keep], target[keep]
        if len(pred) and (pred.min() < 0 or pred.max() >= self.n):
            raise ValueError(f"predicted class {int(pred.max())} outside 0–{self.n - 1}")
        self.matrix += np.bincount(target * self.n + pred, minlength=self.n * self.n
                                   ).reshape(self.n, self.n)
        return self

    def __iadd__(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        self.matrix += other.matrix
        return self

    def state(self) -> dict:
        return {"matrix": self.matrix.tolist()}

    def load_state(self, state: dict) -> None:
        self.matrix = np.array(state["matrix"], np.int64)

    def all_reduce(self, d: Dist) -> "ConfusionMatrix":
        """The matrix summed over every process (this one's is left unchanged)."""
        merged = ConfusionMatrix(self.n, self.ignore_index)
        merged.matrix = sum_array(d, self.matrix.copy())  # a copy also with one process
        return merged

    @property
    def total(self) -> int:
        return int(self.matrix.sum())

    def oa(self) -> float:
        return float(np.trace(self.matrix) / max(1, self.total))

    def class_acc(self) -> np.ndarray:
        """Recall per class; NaN for classes absent from the ground truth."""
        gt = self.matrix.sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(gt > 0, np.diag(self.matrix) / gt, np.nan)

    def macc(self) -> float:
        acc = self.class_acc()
        return float(np.nanmean(acc)) if np.isfinite(acc).any() else 0.0

    def iou(self) -> np.ndarray:
        """IoU per class; NaN where the union is empty (absent and never predicted)."""
        tp = np.diag(self.matrix)
        union = self.matrix.sum(0) + self.matrix.sum(1) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, tp / union, np.nan)

    def miou(self) -> float:
        iou = self.iou()
        return float(np.nanmean(iou)) if np.isfinite(iou).any() else 0.0

    def summary(self, names=None) -> dict:
        names = list(names) if names is not None else [str(i) for i in range(self.n)]
        nan_none = lambda v: None if np.isnan(v) else float(v)  # noqa: E731
        return {"oa": self.oa(), "macc": self.macc(), "miou": self.miou(), "points": self.total,
                "iou": {n: nan_none(v) for n, v in zip(names, self.iou())},
                "acc": {n: nan_none(v) for n, v in zip(names, self.class_acc())},
                "confusion": self.matrix.tolist()}


class PartNetIoU:
    """PartNet semantic segmentation metrics, as in its evaluation code.

    The prediction is the argmax over classes ≥ 1 (label 0 "other" is never predicted);
    ground-truth points labelled 0 are ignored. Per-part IoU = ΣI / ΣU over the whole test set
    (part mIoU = their mean over parts with ΣU > 0); shape mIoU = mean over shapes of the mean
    IoU of the parts with U > 0 in that shape.
    """

    def __init__(self, n_classes: int):
        self.n = n_classes
        self.inter = np.zeros(n_classes, np.int64)
        self.union = np.zeros(n_classes, np.int64)
        self.shape_ious: list[float] = []

    @staticmethod
    def predict(logits: np.ndarray) -> np.ndarray:
        """Labels from logits `(…, n_classes, N)`: argmax over classes 1… ."""
        return np.asarray(logits)[..., 1:, :].argmax(-2) + 1

    def update(self, pred: np.ndarray, target: np.ndarray) -> "PartNetIoU":
        pred, target = np.atleast_2d(pred), np.atleast_2d(target)
        for p, t in zip(pred, target):
            valid = t != 0
            ious = []
            for c in range(1, self.n):
                g, q = (t == c) & valid, (p == c) & valid
                i, u = int((g & q).sum()), int((g | q).sum())
                self.inter[c] += i
                self.union[c] += u
                if u > 0:
                    ious.append(i / u)
            if ious:
                self.shape_ious.append(float(np.mean(ious)))
        return self

    def state(self) -> dict:
        return {"inter": self.inter.tolist(), "union": self.union.tolist(),
                "shape_ious": list(self.shape_ious)}

    def load_state(self, state: dict) -> None:
        self.inter = np.array(state["inter"], np.int64)
        self.union = np.array(state["union"], np.int64)
        self.shape_ious = list(state["shape_ious"])

    def all_reduce(self, d: Dist) -> "PartNetIoU":
        """Sums and every shape's IoU over every process (this one's are left unchanged)."""
        merged = PartNetIoU(self.n)
        merged.inter = sum_array(d, self.inter.copy())  # copies also with one process
        merged.union = sum_array(d, self.union.copy())
        merged.shape_ious = [v for part in gather_objects(d, self.shape_ious) for v in part]
        return merged

    def part_iou(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = np.where(self.union > 0, self.inter / np.maximum(self.union, 1), np.nan)
        iou[0] = np.nan
        return iou

    def summary(self, names=None) -> dict:
        iou = self.part_iou()
        names = list(names) if names is not None else [str(i) for i in range(self.n)]
        return {"part_miou": float(np.nanmean(iou)) if np.isfinite(iou).any() else 0.0,
                "shape_miou": float(np.mean(self.shape_ious)) if self.shape_ious else 0.0,
                "shapes": len(self.shape_ious),
                "iou": {n: (None if np.isnan(v) else float(v)) for n, v in zip(names, iou)}}
