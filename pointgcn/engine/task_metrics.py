"""The validation metric of each task, accumulated over batches and summed across ranks."""
from __future__ import annotations

import numpy as np
import torch

from .distributed import Dist, gather_objects, sum_array
from .metrics import ConfusionMatrix, PartNetIoU

# The metric that picks the best checkpoint, per task, and the ones allowed instead (all are
# higher-is-better).
KEY_METRIC = {"segmentation": "miou", "classification": "oa", "part_segmentation": "part_miou"}
SELECTABLE = {"segmentation": ("miou", "oa", "macc"), "classification": ("oa", "macc", "miou"),
              "part_segmentation": ("part_miou", "shape_miou")}


def predict_labels(task: str, logits: np.ndarray) -> np.ndarray:
    """Labels from logits: argmax over classes (PartNet: over classes ≥ 1)."""
    if task == "part_segmentation":
        return PartNetIoU.predict(logits)
    return np.asarray(logits).argmax(1)


class TaskMetrics:
    def __init__(self, task: str, n_classes: int, names=None, ignore_index: int | None = None):
        self.task, self.names = task, names
        self.loss_sum, self.count = 0.0, 0
        if task == "part_segmentation":
            self.acc = PartNetIoU(n_classes)
        else:
            self.acc = ConfusionMatrix(n_classes, ignore_index)

    def update(self, logits: torch.Tensor, labels: torch.Tensor, loss: float | None = None):
        logits = logits.detach()
        if self.task == "part_segmentation":
            pred = predict_labels(self.task, logits.float().cpu().numpy())
        else:  # labels on the model's device: one small copy to the host, not the logits
            pred = logits.argmax(1).cpu().numpy()
        self.acc.update(pred, labels.cpu().numpy())
        if loss is not None:
            self.loss_sum += loss * len(labels)
            self.count += len(labels)

    def result(self, d: Dist = Dist()) -> dict:
        """Metrics over all ranks' batches (rank-local state is left unchanged)."""
        loss = sum_array(d, np.array([self.loss_sum, self.count], dtype=np.float64))
        if isinstance(self.acc, PartNetIoU):
            merged = PartNetIoU(self.acc.n)
            merged.inter = sum_array(d, self.acc.inter)
            merged.union = sum_array(d, self.acc.union)
            merged.shape_ious = [v for part in gather_objects(d, self.acc.shape_ious) for v in part]
        else:
            merged = ConfusionMatrix(self.acc.n, self.acc.ignore_index)
            merged.matrix = sum_array(d, self.acc.matrix)
        out = merged.summary(self.names)
        if loss[1] > 0:
            out["loss"] = float(loss[0] / loss[1])
        if isinstance(merged, ConfusionMatrix):
            out["confusion"] = merged.matrix.tolist()
        return out

    def state(self) -> dict:
        """Picklable running state (for mid-epoch checkpoints)."""
        st = {"loss_sum": self.loss_sum, "count": self.count}
        if isinstance(self.acc, PartNetIoU):
            st.update(inter=self.acc.inter.tolist(), union=self.acc.union.tolist(),
                      shape_ious=list(self.acc.shape_ious))
        else:
            st["matrix"] = self.acc.matrix.tolist()
        return st

    def load_state(self, st: dict) -> None:
        self.loss_sum, self.count = st["loss_sum"], st["count"]
        if isinstance(self.acc, PartNetIoU):
            self.acc.inter = np.array(st["inter"], np.int64)
            self.acc.union = np.array(st["union"], np.int64)
            self.acc.shape_ious = list(st["shape_ious"])
        else:
            self.acc.matrix = np.array(st["matrix"], np.int64)
