"""Dilated kNN (DeepGCN): take k·d neighbours, keep every d-th; stochastic dilation in training.

Stochastic dilation (ε): with probability ε a *sample* uses a random k of its k·d neighbours
instead of the regular stride. Each sample of the batch draws its own coin and subset (the
reference code draws one subset for the whole batch). The subset is kept in ascending distance
order. Off in eval mode.

Inside `point_mask(mask)` (a padded batch of ragged clouds) the graph is built with that mask:
padding is never a neighbour, and every cloud must hold k·d real points.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError, InputError
from .knn import active_mask, knn, knn_cluster

BACKENDS = ("dense", "cluster")


def dilate(idx: torch.Tensor, k: int, dilation: int, epsilon: float = 0.0,
           stochastic: bool = False) -> torch.Tensor:
    """Select k of the k·d sorted neighbours in `idx` (B, N, k·d) → (B, N, k)."""
    if dilation == 1:
        return idx[:, :, :k]
    if not stochastic or epsilon <= 0:
        return idx[:, :, ::dilation][:, :, :k]
    b, n, kd = idx.shape
    device = idx.device
    regular = torch.arange(0, kd, dilation, device=device)[:k].expand(b, k)
    subset = torch.rand(b, kd, device=device).argsort(dim=-1)[:, :k].sort(dim=-1).values
    coin = torch.rand(b, 1, device=device) < epsilon
    pick = torch.where(coin, subset, regular)
    return idx.gather(2, pick.unsqueeze(1).expand(b, n, k))


class DilatedKnn(nn.Module):
    """Dynamic graph on the given features: k neighbours with dilation d (DeepGCN style)."""

    def __init__(self, k: int, dilation: int = 1, stochastic: bool = False, epsilon: float = 0.0,
                 backend: str = "dense"):
        super().__init__()
        if backend not in BACKENDS:
            raise ConfigError(f"knn_backend must be one of {BACKENDS}, got {backend!r}")
        if k < 1 or dilation < 1:
            raise ConfigError(f"k and dilation must be ≥ 1, got k={k}, dilation={dilation}")
        self.k, self.dilation, self.stochastic, self.epsilon = k, dilation, stochastic, epsilon
        self.backend = backend

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kd = self.k * self.dilation
        if x.dim() == 3 and kd > x.shape[2] >= self.k:
            raise InputError(f"a dilated graph needs k·d = {self.k}·{self.dilation} = {kd} "
                             f"neighbours but the cloud has only {x.shape[2]} points")
        mask = active_mask()
        if mask is None:
            find = knn_cluster if self.backend == "cluster" else knn
            idx = find(x, kd)
        else:
            if self.backend == "cluster":
                raise InputError("padded batches of ragged clouds need knn_backend 'dense' "
                                 "(torch_cluster's kNN takes no mask)")
            fewest = int(mask.sum(1).min()) if mask.numel() else 0
            if fewest < kd:
                raise InputError(f"a graph of k·d = {self.k}·{self.dilation} = {kd} neighbours "
                                 f"needs {kd} points per cloud; a cloud of the batch has "
                                 f"{fewest}")
            idx = knn(x, kd, mask=mask)
        return dilate(idx, self.k, self.dilation, self.epsilon,
                      self.stochastic and self.training)

    def extra_repr(self) -> str:
        s = f"k={self.k}, dilation={self.dilation}"
        if self.stochastic:
            s += f", stochastic ε={self.epsilon}"
        return s + ("" if self.backend == "dense" else f", backend={self.backend}")


def knn_modules(model: nn.Module) -> list[DilatedKnn]:
    return [m for m in model.modules() if isinstance(m, DilatedKnn)]


def min_points(model: nn.Module) -> int:
    """The smallest cloud every graph of the model can be built on: max k·dilation."""
    return max([m.k * m.dilation for m in knn_modules(model)], default=1)
