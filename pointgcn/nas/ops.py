"""The 10 candidate operations of the SGAS / LC-NAS search space and the mixed edge.

Every op maps `(B, C, N)` features and a kNN graph `(B, N, k)` to `(B, C, N)`, keeping the
width, so any op can sit on any edge. The graph ops are the dense convs of `pointgcn.nn`
(ReLU + BatchNorm, no bias: the norm makes a bias redundant, as in the SGAS code).

A mixed edge is the softmax-weighted sum of all ops, `Σ_o w_o · op_o(x)`. `none` is the zero
op, so its term is left out of the sum (it adds exactly 0) instead of multiplying a tensor by 0.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from ..nn import make_conv

PRIMITIVES = ("none", "skip_connect", "conv_1x1", "edge_conv", "mr_conv", "gat", "semi_gcn",
              "gin", "sage", "rel_sage")
NONE = 0
# Search-space op name → conv name in pointgcn.nn.
_CONV_OF = {"conv_1x1": "conv1x1", "edge_conv": "edge", "mr_conv": "mr", "gat": "gat",
            "semi_gcn": "semi_gcn", "gin": "gin", "sage": "sage", "rel_sage": "rsage"}


class Zero(nn.Module):
    """The `none` op: the edge carries nothing."""

    needs_graph = False

    def forward(self, x: torch.Tensor, idx=None) -> torch.Tensor:
        return torch.zeros_like(x)


class Identity(nn.Module):
    """The `skip_connect` op."""

    needs_graph = False

    def forward(self, x: torch.Tensor, idx=None) -> torch.Tensor:
        return x


def check_op(name: str) -> int:
    """Index of op `name` in PRIMITIVES, or a ConfigError naming the allowed ones."""
    if name not in PRIMITIVES:
        raise ConfigError(f"unknown op {name!r}; ops are {', '.join(PRIMITIVES)}")
    return PRIMITIVES.index(name)


def make_op(name: str, channels: int, norm: str = "batch", act: str = "relu",
            **conv_options) -> nn.Module:
    """One candidate op at width `channels`; `conv_options` go to the conv (e.g. heads)."""
    check_op(name)
    if name == "none":
        return Zero()
    if name == "skip_connect":
        return Identity()
    return make_conv(_CONV_OF[name], channels, channels, norm=norm, act=act, bias=False,
                     **conv_options)


def op_needs_graph(op: nn.Module) -> bool:
    return bool(getattr(op, "needs_graph", False))


class MixedOp(nn.Module):
    """All candidate ops on one edge of the supernet."""

    def __init__(self, channels: int, norm: str = "batch", act: str = "relu", **conv_options):
        super().__init__()
        self.ops = nn.ModuleList(make_op(p, channels, norm, act, **conv_options)
                                 for p in PRIMITIVES)

    def forward(self, x: torch.Tensor, idx: torch.Tensor | None, weights: torch.Tensor,
                chosen: int | None = None) -> torch.Tensor:
        """Weighted sum over ops with `weights` (n_ops,); with `chosen` only that op runs."""
        if chosen is not None:
            return self.ops[chosen](x, idx)
        out = None
        for o, op in enumerate(self.ops):
            if o == NONE:
                continue
            term = weights[o] * op(x, idx)
            out = term if out is None else out + term
        return out
