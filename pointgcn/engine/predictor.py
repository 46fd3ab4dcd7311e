"""One inference interface for every runtime: features `(B, C, N)` float32 numpy → logits numpy.

`segment`/`classify` and the evaluator take a `Predictor`, so PyTorch and onnxruntime share all
pre- and post-processing. `TorchPredictor` is here; `OnnxPredictor` lives in pointgcn.export.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np
import torch


class Predictor(Protocol):
    in_channels: int
    n_classes: int
    task: str          # "segmentation" | "part_segmentation" | "classification"
    name: str
    class_names: list[str]

    def __call__(self, features: np.ndarray) -> np.ndarray:
        """Logits `(B, n_classes, N)` for segmentation, `(B, n_classes)` for classification."""
        ...


class TorchPredictor:
    def __init__(self, model: torch.nn.Module, name: str = "torch", threads: int | None = None,
                 class_names: list[str] | None = None):
        self.model = model.eval()
        cfg = model.cfg
        self.in_channels, self.n_classes, self.task = cfg["in_channels"], cfg["n_classes"], cfg["task"]
        self.name = name
        self.class_names = class_names or [str(i) for i in range(self.n_classes)]
        if threads:
            torch.set_num_threads(threads)

    @torch.no_grad()
    def __call__(self, features: np.ndarray) -> np.ndarray:
        return self.model(torch.from_numpy(np.ascontiguousarray(features, np.float32))).numpy()


def load_predictor(source: str, threads: int | None = None) -> tuple[Predictor, dict]:
    """(predictor, run config) from a checkpoint path, a shipped model name or an .onnx file."""
    from ..models import load_checkpoint, read_checkpoint
    from ..models.weights import resolve_weights

    if str(source).endswith(".onnx"):
        from ..export import OnnxPredictor

        pred = OnnxPredictor(source, threads=threads)
        return pred, pred.config
    path = resolve_weights(source)
    ckpt = read_checkpoint(path)
    cfg = dict(ckpt.get("config") or {})
    model = load_checkpoint(path)
    cfg["model"] = dict(model.cfg)
    names = (ckpt.get("meta") or {}).get("class_names") or default_class_names(model.cfg)
    return TorchPredictor(model, name=str(source), threads=threads, class_names=names), cfg


def default_class_names(model_cfg: dict) -> list[str]:
    """S3DIS names for 13-class segmenters, ModelNet40 names for 40-class classifiers."""
    from ..data.classes import MODELNET40_CLASSES, S3DIS_CLASSES

    n, task = model_cfg["n_classes"], model_cfg["task"]
    if task == "segmentation" and n == len(S3DIS_CLASSES):
        return list(S3DIS_CLASSES)
    if task == "classification" and n == len(MODELNET40_CLASSES):
        return list(MODELNET40_CLASSES)
    return [str(i) for i in range(n)]
