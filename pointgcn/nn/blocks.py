"""DeepGCN blocks on dynamic (dilated) kNN graphs built from each block's own input.

plain   y = F(x)
res     y = F(x) + s·x                         (ResGCN, s = res_scale)
dense   y = [x, F(x)]                          (DenseGCN, concatenation grows channels)
res+    y = x + F(dropout(σ(N(x))))            (DeeperGCN pre-activation residual)
rev     see reversible.py (group additive coupling, memory flat in depth)
wt-rev  rev with one set of convs shared by every layer (reversible.py)
deq     one equilibrium layer z* = f(z*, x), solved, not stacked (deq.py)
where F(x) = conv(x, kNN_d(x)). rev, wt-rev and deq are stacks (`build_stack`): the backbone
is one module that keeps only its output, not a list of blocks.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..graph import DilatedKnn
from .base import graph_for
from .norm_act import apply_norm, make_act, make_norm
from .registry import BLOCKS, make_conv

# conv(in_channels, out_channels, norm=…, act=…) → a GraphConv of the model's kind
ConvFactory = Callable[..., nn.Module]


class GraphBlock(nn.Module):
    """A conv with its own dynamic graph; subclasses combine F(x) with x.

    `build(channels, conv, graph, **options)` makes a block of the kind from the model
    config's block options (res_scale, growth, dropout, rev_groups, norm, act), ignoring the
    ones it does not take.
    """

    def __init__(self, conv: nn.Module, graph: DilatedKnn):
        super().__init__()
        self.conv, self.graph = conv, graph
        self.in_channels = conv.in_channels
        self.out_channels = conv.out_channels

    def f(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x, graph_for(self.conv, self.graph, x))


@BLOCKS.register("plain")
class PlainBlock(GraphBlock):
    @classmethod
    def build(cls, channels: int, conv: ConvFactory, graph: DilatedKnn, **_):
        return cls(conv(channels, channels), graph)

    def forward(self, x):
        return self.f(x)


@BLOCKS.register("res")
class ResBlock(GraphBlock):
    def __init__(self, conv, graph, res_scale: float = 1.0):
        super().__init__(conv, graph)
        self.res_scale = res_scale

    @classmethod
    def build(cls, channels, conv, graph, res_scale: float = 1.0, **_):
        return cls(conv(channels, channels), graph, res_scale)

    def forward(self, x):
        return self.f(x) + self.res_scale * x


@BLOCKS.register("dense")
class DenseBlock(GraphBlock):
    def __init__(self, conv, graph):
        super().__init__(conv, graph)
        self.out_channels = conv.in_channels + conv.out_channels

    @classmethod
    def build(cls, channels, conv, graph, growth: int | None = None, **_):
        return cls(conv(channels, growth or channels), graph)

    def forward(self, x):
        return torch.cat([x, self.f(x)], dim=1)


@BLOCKS.register("res+", aliases=("resplus",))
class ResPlusBlock(GraphBlock):
    """Pre-activation residual; the conv itself has no norm/act (they come first), inner
    layers included (GraphSAGE's neighbour MLP, GEN's hidden MLP layers)."""

    def __init__(self, conv, graph, norm: str = "batch", act: str = "relu", dropout: float = 0.0):
        super().__init__(conv, graph)
        self.norm = make_norm(norm, conv.in_channels)
        self.act = make_act(act)
        self.dropout = nn.Dropout(dropout)

    @classmethod
    def build(cls, channels, conv, graph, norm: str = "batch", act: str = "relu",
              dropout: float = 0.0, **_):
        return cls(conv(channels, channels, norm="none", act="none"), graph, norm, act, dropout)

    def forward(self, x):
        h = apply_norm(self.norm, x.transpose(1, 2)).transpose(1, 2)
        h = self.dropout(self.act(h))
        return x + self.conv(h, graph_for(self.conv, self.graph, x))


def make_backbone(kind: str, depth: int, channels: int, conv: str, k: int,
                  use_dilation: bool = True, stochastic: bool = False, epsilon: float = 0.0,
                  knn_backend: str = "dense", norm: str = "batch", act: str = "relu",
                  bias: bool = True, act_first: bool = False, res_scale: float = 1.0,
                  growth: int | None = None, dropout: float = 0.0, rev_groups: int = 2,
                  deq: dict | None = None, **conv_options) -> tuple[nn.Module, list[int]]:
    """`depth` blocks of `kind` after `channels` features, block i with dilation 1 + i (when
    `use_dilation`) → (backbone, output widths). Layer kinds give an `nn.ModuleList` whose
    every output is kept; stacks one module returning its last output (widths: just that)."""
    def graph_of(i: int) -> DilatedKnn:
        return DilatedKnn(k, 1 + i if use_dilation else 1, stochastic, epsilon, knn_backend)

    def conv_of(cin: int, cout: int, norm: str = norm, act: str = act) -> nn.Module:
        return make_conv(conv, cin, cout, norm, act, bias=bias, act_first=act_first,
                         **conv_options)

    spec = BLOCKS.get(kind.lower())
    options = dict(norm=norm, act=act, res_scale=res_scale, growth=growth, dropout=dropout,
                   rev_groups=rev_groups)
    if BLOCKS.info(kind.lower()).get("stack"):
        if depth == 0:
            return nn.ModuleList(), []
        stack = spec.build_stack(depth, channels, conv_of, graph_of, deq=deq, **options)
        return stack, [stack.out_channels]
    blocks, widths = nn.ModuleList(), []
    for i in range(depth):
        blocks.append(spec.build(widths[-1] if widths else channels, conv_of, graph_of(i),
                                 **options))
        widths.append(blocks[-1].out_channels)
    return blocks, widths


def make_block(kind: str, channels: int, conv: str, k: int, dilation: int = 1,
               norm: str = "batch", act: str = "relu", bias: bool = True,
               act_first: bool = False, stochastic: bool = False, epsilon: float = 0.0,
               knn_backend: str = "dense", res_scale: float = 1.0, growth: int | None = None,
               dropout: float = 0.0, rev_groups: int = 2, **conv_options) -> nn.Module:
    """One backbone block taking `channels` features; see module docstring for the kinds."""
    graph = DilatedKnn(k, dilation, stochastic, epsilon, knn_backend)

    def conv_of(cin: int, cout: int, norm: str = norm, act: str = act) -> nn.Module:
        return make_conv(conv, cin, cout, norm, act, bias=bias, act_first=act_first,
                         **conv_options)

    return BLOCKS.get(kind.lower()).build(channels, conv_of, graph, norm=norm, act=act,
                                          res_scale=res_scale, growth=growth, dropout=dropout,
                                          rev_groups=rev_groups)
