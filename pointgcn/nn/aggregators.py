"""DeeperGCN's aggregators over the neighbour axis of a message tensor `(…, k, C)`.

softmax      Σ_j softmax_j(β·m_ij) ⊙ m_ij, β learnable; β→0 gives mean, β→∞ gives max
softmax_sg   the same with the weights computed without gradient and β fixed
power        (mean_j m_ij^p)^(1/p), p learnable; p=1 gives mean (messages clamped to [1e-4, 100])
mean / max / sum
"""
from __future__ import annotations

import torch
from torch import nn

from .registry import AGGREGATORS

# Power mean clamps messages into [1e-4, 100] (as PyG) so x^p and its gradient stay finite.
POWER_MIN, POWER_MAX = 1e-4, 100.0


class Aggregator(nn.Module):
    """Reduces messages `(…, k, C)` over the neighbour axis `dim`."""

    def forward(self, m: torch.Tensor, dim: int) -> torch.Tensor:
        raise NotImplementedError


@AGGREGATORS.register("mean")
class MeanAggregator(Aggregator):
    def forward(self, m: torch.Tensor, dim: int) -> torch.Tensor:
        return m.mean(dim)


@AGGREGATORS.register("max")
class MaxAggregator(Aggregator):
    def forward(self, m: torch.Tensor, dim: int) -> torch.Tensor:
        return m.amax(dim)


@AGGREGATORS.register("sum")
class SumAggregator(Aggregator):
    def forward(self, m: torch.Tensor, dim: int) -> torch.Tensor:
        return m.sum(dim)


@AGGREGATORS.register("softmax", options=("t", "learn_t"))
class SoftmaxAggregator(Aggregator):
    def __init__(self, t: float = 1.0, learn_t: bool = True):
        super().__init__()
        self.t = nn.Parameter(torch.tensor([float(t)]), requires_grad=learn_t)

    def forward(self, m: torch.Tensor, dim: int) -> torch.Tensor:
        return (m * (m * self.t).softmax(dim)).sum(dim)


@AGGREGATORS.register("softmax_sg", options=("t",))
class StopGradSoftmaxAggregator(Aggregator):
    """β stays a (frozen) parameter so checkpoints keep the `aggr.t` entry of `softmax`."""

    def __init__(self, t: float = 1.0):
        super().__init__()
        self.t = nn.Parameter(torch.tensor([float(t)]), requires_grad=False)

    def forward(self, m: torch.Tensor, dim: int) -> torch.Tensor:
        with torch.no_grad():
            w = (m * self.t).softmax(dim)
        return (m * w).sum(dim)


@AGGREGATORS.register("power", options=("p", "learn_p"))
class PowerMeanAggregator(Aggregator):
    def __init__(self, p: float = 1.0, learn_p: bool = True):
        super().__init__()
        self.p = nn.Parameter(torch.tensor([float(p)]), requires_grad=learn_p)

    def forward(self, m: torch.Tensor, dim: int) -> torch.Tensor:
        powered = m.clamp(POWER_MIN, POWER_MAX).pow(self.p)
        return powered.mean(dim).clamp(POWER_MIN, POWER_MAX).pow(1.0 / self.p)


def make_aggregator(kind: str = "softmax", **options) -> Aggregator:
    """Aggregator `kind`; `options` (t, learn_t, p, learn_p) it does not take are ignored."""
    own = AGGREGATORS.info(kind).get("options", ())
    return AGGREGATORS.get(kind)(**{k: v for k, v in options.items() if k in own})
