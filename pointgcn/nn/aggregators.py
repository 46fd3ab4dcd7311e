"""DeeperGCN's aggregators over the neighbour axis of a message tensor `(…, k, C)`.

softmax      Σ_j softmax_j(β·m_ij) ⊙ m_ij, β learnable; β→0 gives mean, β→∞ gives max
softmax_sg   the same with the weights computed without gradient and β fixed
power        (mean_j m_ij^p)^(1/p), p learnable; p=1 gives mean (messages clamped to [1e-4, 100])
mean / max / sum
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError

# Power mean clamps messages into [1e-4, 100] (as PyG) so x^p and its gradient stay finite.
POWER_MIN, POWER_MAX = 1e-4, 100.0
AGGREGATORS = ("mean", "max", "sum", "softmax", "softmax_sg", "power")


class Aggregator(nn.Module):
    def __init__(self, kind: str = "softmax", t: float = 1.0, learn_t: bool = True,
                 p: float = 1.0, learn_p: bool = True):
        super().__init__()
        if kind not in AGGREGATORS:
            raise ConfigError(f"aggr must be one of {AGGREGATORS}, got {kind!r}")
        self.kind = kind
        if kind in ("softmax", "softmax_sg"):
            learn = learn_t and kind == "softmax"
            self.t = nn.Parameter(torch.tensor([float(t)]), requires_grad=learn)
        if kind == "power":
            self.p = nn.Parameter(torch.tensor([float(p)]), requires_grad=learn_p)

    def forward(self, m: torch.Tensor, dim: int) -> torch.Tensor:
        if self.kind == "mean":
            return m.mean(dim)
        if self.kind == "max":
            return m.amax(dim)
        if self.kind == "sum":
            return m.sum(dim)
        if self.kind == "softmax":
            return (m * (m * self.t).softmax(dim)).sum(dim)
        if self.kind == "softmax_sg":
            with torch.no_grad():
                w = (m * self.t).softmax(dim)
            return (m * w).sum(dim)
        powered = m.clamp(POWER_MIN, POWER_MAX).pow(self.p)
        return powered.mean(dim).clamp(POWER_MIN, POWER_MAX).pow(1.0 / self.p)

    def extra_repr(self) -> str:
        return self.kind
