"""DeepGCN blocks on dynamic (dilated) kNN graphs built from each block's own input.

plain   y = F(x)
res     y = F(x) + s·x                         (ResGCN, s = res_scale)
dense   y = [x, F(x)]                          (DenseGCN, concatenation grows channels)
res+    y = x + F(dropout(σ(N(x))))            (DeeperGCN pre-activation residual)
rev     see reversible.py (group additive coupling, memory flat in depth)
where F(x) = conv(x, kNN_d(x)).
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from ..graph import DilatedKnn
from .norm_act import apply_norm, make_act, make_norm
from .registry import make_conv
from .reversible import RevBlock


class GraphBlock(nn.Module):
    """A conv with its own dynamic graph; subclasses combine F(x) with x."""

    def __init__(self, conv: nn.Module, graph: DilatedKnn):
        super().__init__()
        self.conv, self.graph = conv, graph
        self.in_channels = conv.in_channels
        self.out_channels = conv.out_channels

    def f(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x, self.graph(x) if self.conv.needs_graph else None)


class PlainBlock(GraphBlock):
    def forward(self, x):
        return self.f(x)


class ResBlock(GraphBlock):
    def __init__(self, conv, graph, res_scale: float = 1.0):
        super().__init__(conv, graph)
        self.res_scale = res_scale

    def forward(self, x):
        return self.f(x) + self.res_scale * x


class DenseBlock(GraphBlock):
    def __init__(self, conv, graph):
        super().__init__(conv, graph)
        self.out_channels = conv.in_channels + conv.out_channels

    def forward(self, x):
        return torch.cat([x, self.f(x)], dim=1)


class ResPlusBlock(GraphBlock):
    """Pre-activation residual; the conv itself has no norm/act (they come first)."""

    def __init__(self, conv, graph, norm: str = "batch", act: str = "relu", dropout: float = 0.0):
        super().__init__(conv, graph)
        self.norm = make_norm(norm, conv.in_channels)
        self.act = make_act(act)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        h = apply_norm(self.norm, x.transpose(1, 2)).transpose(1, 2)
        h = self.dropout(self.act(h))
        return x + self.conv(h, self.graph(x) if self.conv.needs_graph else None)


def make_block(kind: str, channels: int, conv: str, k: int, dilation: int = 1,
               norm: str = "batch", act: str = "relu", bias: bool = True,
               act_first: bool = False, stochastic: bool = False, epsilon: float = 0.0,
               knn_backend: str = "dense", res_scale: float = 1.0, growth: int | None = None,
               dropout: float = 0.0, rev_groups: int = 2, **conv_options) -> nn.Module:
    """One backbone block taking `channels` features; see module docstring for the kinds."""
    graph = DilatedKnn(k, dilation, stochastic, epsilon, knn_backend)
    common = dict(bias=bias, act_first=act_first, **conv_options)
    kind = kind.lower()
    if kind == "plain":
        return PlainBlock(make_conv(conv, channels, channels, norm, act, **common), graph)
    if kind == "res":
        return ResBlock(make_conv(conv, channels, channels, norm, act, **common), graph, res_scale)
    if kind == "dense":
        return DenseBlock(make_conv(conv, channels, growth or channels, norm, act, **common), graph)
    if kind in ("res+", "resplus"):
        return ResPlusBlock(make_conv(conv, channels, channels, "none", "none", **common), graph,
                            norm, act, dropout)
    if kind == "rev":
        if rev_groups < 2 or channels % rev_groups:
            raise ConfigError(f"rev blocks need ≥ 2 groups dividing channels={channels}, "
                              f"got rev_groups={rev_groups}")
        width = channels // rev_groups
        convs = [make_conv(conv, width, width, norm, act, **common) for _ in range(rev_groups)]
        return RevBlock(convs, graph)
    raise ConfigError(f"block must be one of plain, res, dense, res+, rev; got {kind!r}")
