"""Per-layer over-smoothing diagnostics of a model on a data split (`pointgcn analyze`).

Each layer's output (the model's `layers()`: the head or stem, then every block or cell) is
captured by forward hooks while the model runs on the split's samples in eval mode. Points
(shapes, for classification: each layer's features max-pooled over the shape) are drawn with a
fixed seed up to `max_points` and pooled over samples, then scored with pointgcn.engine
.diagnostics; the Dirichlet energy is taken per sample on its xyz kNN graph and averaged.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from ..errors import InputError
from ..graph import knn
from .diagnostics import (dirichlet_energy, effective_rank, group_distance_ratio,
                          instance_information_gain)


@dataclass
class LayerReport:
    layer: int
    name: str
    channels: int
    group_distance_ratio: float
    instance_information_gain: float
    dirichlet_energy: float
    effective_rank: float

    def as_dict(self) -> dict:
        return asdict(self)


def _capture(model: torch.nn.Module):
    """Forward hooks on `model.layers()` filling a list of each layer's output per call."""
    layers = list(model.layers())
    seen: list[list[torch.Tensor]] = [[] for _ in layers]
    hooks = [module.register_forward_hook(
        lambda m, inp, out, i=i: seen[i].append(out.detach().float().cpu()))
        for i, (_, module) in enumerate(layers)]
    return [name for name, _ in layers], seen, hooks


def analyze(model: torch.nn.Module, dataset, *, task: str, max_samples: int = 16,
            max_points: int = 2048, k: int = 16, seed: int = 0) -> list[LayerReport]:
    """Diagnostics per layer of `model` (with a `layers()` method) on up to `max_samples`
    items of `dataset` (`(features (C, N), labels)` items, first 3 channels xyz)."""
    if not hasattr(model, "layers"):
        raise InputError("this model does not list its layers; analyze needs a PyTorch "
                         "DeepGCN or NAS checkpoint (not an .onnx file)")
    if len(dataset) == 0:
        raise InputError("the data split is empty: nothing to analyze")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(dataset))[:max_samples]
    names, seen, hooks = _capture(model)
    inputs, labels = [], []
    pooled, energy = [[] for _ in names], [[] for _ in names]
    model.eval()
    try:
        with torch.no_grad():
            for index in order:
                feats, label = dataset[int(index)]
                feats = torch.as_tensor(feats, dtype=torch.float32)
                label = np.asarray(label).reshape(-1)
                model(feats[None])
                nbrs = knn(feats[None, :3], min(k + 1, feats.shape[1]))[0, :, 1:].numpy()  # no self
                if task == "classification":
                    inputs.append(feats.T.numpy().max(0, keepdims=True))
                    labels.append(label[:1])
                else:
                    take = rng.permutation(feats.shape[1])[:max(1, max_points // len(order))]
                    inputs.append(feats.T.numpy()[take])
                    labels.append(label[take])
                for i in range(len(names)):
                    h = seen[i][-1][0].T.numpy()  # (N, F): the layer's last call
                    seen[i].clear()
                    energy[i].append(dirichlet_energy(h, nbrs))
                    pooled[i].append(h.max(0, keepdims=True) if task == "classification"
                                     else h[take])
    finally:
        for hook in hooks:
            hook.remove()
    x, y = np.concatenate(inputs), np.concatenate(labels)
    if len(np.unique(y[y >= 0])) < 2:
        raise InputError("the analysed samples hold fewer than two classes; give more "
                         "samples (max_samples) or another split")
    reports = []
    for i, name in enumerate(names):
        h = np.concatenate(pooled[i])
        reports.append(LayerReport(
            layer=i, name=name, channels=h.shape[1],
            group_distance_ratio=group_distance_ratio(h, y),
            instance_information_gain=instance_information_gain(x, h),
            dirichlet_energy=float(np.mean(energy[i])), effective_rank=effective_rank(h)))
    return reports


def format_table(reports: list[LayerReport]) -> str:
    rows = [f"{'layer':>5}  {'name':14s} {'C':>5}  {'GDR':>7}  {'IIG':>7}  {'Dirichlet':>10}  "
            f"{'eff.rank':>8}"]
    for r in reports:
        rows.append(f"{r.layer:5d}  {r.name:14s} {r.channels:5d}  {r.group_distance_ratio:7.3f}  "
                    f"{r.instance_information_gain:7.3f}  {r.dirichlet_energy:10.4g}  "
                    f"{r.effective_rank:8.2f}")
    return "\n".join(rows)
