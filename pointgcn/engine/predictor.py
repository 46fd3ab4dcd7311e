"""One inference interface for every runtime: features `(B, C, N)` float32 numpy → logits numpy.

`segment`/`classify` and the evaluator take a `Predictor`, so PyTorch and onnxruntime share all
pre- and post-processing. `TorchPredictor` is here; `OnnxPredictor` and `open_model` (path,
shipped name or .onnx → a model and its predictor) live in pointgcn.export.

On a GPU a whole batch of blocks goes to the device in one copy from pinned host memory and its
logits come back in one copy: one host round trip per batch, never per block (the batch size
is the stages' `--batch`).
"""
from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from ..errors import InputError
from ..graph import min_points
from .device import resolve_device, to_device


class Predictor(Protocol):
    in_channels: int
    n_classes: int
    task: str          # "segmentation" | "part_segmentation" | "classification"
    name: str
    class_names: list[str]
    min_points: int    # the most neighbours one graph gathers (k × largest dilation)
    temperature: float  # the logits are the network's divided by this (calibration)

    def __call__(self, features: np.ndarray) -> np.ndarray:
        """Logits `(B, n_classes, N)` for segmentation, `(B, n_classes)` for classification,
        already divided by the model's temperature (calibration.py), so their softmax is the
        calibrated probability; `temperature` says by what (1.0: none recorded)."""
        ...


def finite_logits(logits: np.ndarray, name: str) -> np.ndarray:
    """`logits`, or a one-line InputError if any is NaN/Inf: argmax over NaN is class 0 for
    every point, which would pass for a prediction. Every runtime's `__call__` ends here."""
    if not np.isfinite(logits).all():
        raise InputError(f"{name} gave NaN or Inf logits for this input (overflowing weights "
                         "or input values); no prediction written")
    return logits


class TorchPredictor:
    def __init__(self, model: torch.nn.Module, name: str = "torch", threads: int | None = None,
                 class_names: list[str] | None = None, device: str | torch.device = "cpu",
                 temperature: float = 1.0):
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.model = model.eval().to(self.device)
        cfg = model.cfg
        self.in_channels, self.n_classes, self.task = cfg["in_channels"], cfg["n_classes"], cfg["task"]
        self.name = name
        self.class_names = class_names or [str(i) for i in range(self.n_classes)]
        self.min_points = min_points(model)  # as OnnxPredictor: max k·dilation of its graphs
        self.temperature = float(temperature)
        if threads:
            torch.set_num_threads(threads)

    @torch.no_grad()
    def __call__(self, features: np.ndarray) -> np.ndarray:
        x = to_device(torch.from_numpy(np.ascontiguousarray(features, np.float32)), self.device)
        logits = self.model(x).float()
        if self.temperature != 1.0:
            logits = logits / self.temperature
        return finite_logits(logits.cpu().numpy(), self.name)

