"""The validation metric of each task, accumulated over batches and summed across ranks."""
from __future__ import annotations

import numpy as np
import torch

from .distributed import Dist, sum_array
from .metrics import ConfusionMatrix, PartNetIoU

# The metric that picks the best checkpoint, per task, and the ones allowed instead (all are
# higher-is-better).
KEY_METRIC = {"segmentation": "miou", "classification": "oa", "part_segmentation": "part_miou"}
SELECTABLE = {"segmentation": ("miou", "oa", "macc"), "classification": ("oa", "macc", "miou"),
              "part_segmentation": ("part_miou", "shape_miou")}


def metric_class(task: str) -> type:
    """PartNet's rule for part segmentation, a confusion matrix for the other tasks."""
    return PartNetIoU if task == "part_segmentation" else ConfusionMatrix


def predict_labels(task: str, logits: np.ndarray) -> np.ndarray:
    """Labels from logits: argmax over classes (PartNet: over classes ≥ 1)."""
    return metric_class(task).predict(logits)


class TaskMetrics:
    def __init__(self, task: str, n_classes: int, names=None, ignore_index: int | None = None):
        self.task, self.names = task, names
        self.loss_sum, self.count = 0.0, 0
        self.acc = (PartNetIoU(n_classes) if task == "part_segmentation"
                    else ConfusionMatrix(n_classes, ignore_index))

    def update(self, logits: torch.Tensor, labels: torch.Tensor, loss: float | None = None):
        logits = logits.detach()
        if self.task == "part_segmentation":
            pred = self.acc.predict(logits.float().cpu().numpy())
        else:  # argmax on the model's device: one small copy to the host, not the logits
            pred = logits.argmax(1).cpu().numpy()
        self.acc.update(pred, labels.cpu().numpy())
        if loss is not None:
            self.loss_sum += loss * len(labels)
            self.count += len(labels)

    def result(self, d: Dist = Dist()) -> dict:
        """Metrics over all ranks' batches (rank-local state is left unchanged)."""
        loss = sum_array(d, np.array([self.loss_sum, self.count], dtype=np.float64))
        out = self.acc.all_reduce(d).summary(self.names)
        if loss[1] > 0:
            out["loss"] = float(loss[0] / loss[1])
        return out

    def state(self) -> dict:
        """Picklable running state (for mid-epoch checkpoints)."""
        return {"loss_sum": self.loss_sum, "count": self.count, **self.acc.state()}

    def load_state(self, st: dict) -> None:
        self.loss_sum, self.count = st["loss_sum"], st["count"]
        self.acc.load_state(st)
