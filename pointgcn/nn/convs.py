"""Neighbour-aggregating graph convs on dense kNN graphs (self is one of the k neighbours).

GIN       h_i = σ(N(Θ((1+ε)·x_i + Σ_j x_j) + b))                          (Xu et al.)
SAGE      h_i = σ(N(Θ₂[x_i, max_j σ(N(Θ₁x_j + b₁))] + b₂))                  (DeepGCN's GraphSAGE)
RSAGE     as SAGE with Θ₁(x_j − x_i) inside the max                         (relative SAGE)
GAT       h_i = σ(N(‖_heads Σ_j α_ij Θx_j + b)),  α = softmax_j LeakyReLU(a_s·Θx_j + a_d·Θx_i)
SemiGCN   h_i = σ(N(mean_j Θx_j + b)) — Kipf & Welling's symmetric normalisation reduces to the
          mean here because every node of a kNN graph has in-degree k.
Conv1x1   h_i = σ(N(Θx_i + b)), ignores the graph.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .base import GraphConv, gather_neighbors
from .edge import edge_max
from .norm_act import PostProcess
from .registry import CONVS


@CONVS.register("gin", options=("eps", "train_eps"))
class GINConv(GraphConv):
    def __init__(self, in_channels, out_channels, norm="batch", act="relu", bias=True,
                 act_first=False, eps: float = 0.0, train_eps: bool = False):
        super().__init__(in_channels, out_channels)
        self.eps = nn.Parameter(torch.tensor([float(eps)]), requires_grad=train_eps)
        self.lin = nn.Linear(in_channels, out_channels, bias=bias)
        self.post = PostProcess(out_channels, norm, act, act_first)

    def conv(self, x, idx):
        agg = gather_neighbors(x, idx).sum(2)
        return self.post(self.lin((1 + self.eps) * x + agg))


@CONVS.register("sage")
class SAGEConv(GraphConv):
    """DeepGCN's GraphSAGE: a per-neighbour MLP, max over neighbours, then an MLP on [x_i, ·]."""

    relative = False

    def __init__(self, in_channels, out_channels, norm="batch", act="relu", bias=True,
                 act_first=False):
        super().__init__(in_channels, out_channels)
        self.lin_nbr = nn.Linear(in_channels, in_channels, bias=bias)
        self.post_nbr = PostProcess(in_channels, norm, act, act_first)
        self.lin = nn.Linear(2 * in_channels, out_channels, bias=bias)
        self.post = PostProcess(out_channels, norm, act, act_first)

    def conv(self, x, idx):
        nbr = torch.matmul(x, self.lin_nbr.weight.t())
        center = -nbr if self.relative else torch.zeros_like(nbr[:, :, :1])
        if self.lin_nbr.bias is not None:
            center = center + self.lin_nbr.bias
        pooled = edge_max(center.expand_as(nbr), nbr, idx, self.post_nbr)
        return self.post(self.lin(torch.cat([x, pooled], dim=-1)))


@CONVS.register("rsage")
class RSAGEConv(SAGEConv):
    """Relative GraphSAGE: Θ₁(x_j − x_i) = Θ₁x_j − Θ₁x_i inside the max."""

    relative = True


@CONVS.register("gat", options=("heads",))
class GATConv(GraphConv):
    def __init__(self, in_channels, out_channels, norm="batch", act="relu", bias=True,
                 act_first=False, heads: int = 1, negative_slope: float = 0.2):
        super().__init__(in_channels, out_channels)
        if out_channels % heads:
            raise ConfigError(f"GAT: out_channels {out_channels} not divisible by heads {heads}")
        self.heads, self.negative_slope = heads, negative_slope
        self.lin = nn.Linear(in_channels, out_channels, bias=False)
        per_head = out_channels // heads
        self.att_src = nn.Parameter(torch.empty(heads, per_head))
        self.att_dst = nn.Parameter(torch.empty(heads, per_head))
        nn.init.xavier_uniform_(self.att_src)
        nn.init.xavier_uniform_(self.att_dst)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.post = PostProcess(out_channels, norm, act, act_first)

    def conv(self, x, idx):
        b, n, _ = x.shape
        h = self.lin(x).view(b, n, self.heads, -1)
        a_src = (h * self.att_src).sum(-1)                       # (B, N, H)
        a_dst = (h * self.att_dst).sum(-1)
        e = gather_neighbors(a_src, idx) + a_dst.unsqueeze(2)    # (B, N, k, H)
        alpha = F.leaky_relu(e, self.negative_slope).softmax(dim=2)
        hj = gather_neighbors(h.reshape(b, n, -1), idx).view(b, n, idx.shape[-1], self.heads, -1)
        out = (alpha.unsqueeze(-1) * hj).sum(2).reshape(b, n, -1)
        if self.bias is not None:
            out = out + self.bias
        return self.post(out)


@CONVS.register("semi_gcn")
class SemiGCNConv(GraphConv):
    def __init__(self, in_channels, out_channels, norm="batch", act="relu", bias=True,
                 act_first=False):
        super().__init__(in_channels, out_channels)
        self.lin = nn.Linear(in_channels, out_channels, bias=False)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.post = PostProcess(out_channels, norm, act, act_first)

    def conv(self, x, idx):
        out = gather_neighbors(self.lin(x), idx).mean(2)
        if self.bias is not None:
            out = out + self.bias
        return self.post(out)


@CONVS.register("conv1x1")
class Conv1x1(GraphConv):
    needs_graph = False

    def __init__(self, in_channels, out_channels, norm="batch", act="relu", bias=True,
                 act_first=False):
        super().__init__(in_channels, out_channels)
        self.lin = nn.Linear(in_channels, out_channels, bias=bias)
        self.post = PostProcess(out_channels, norm, act, act_first)

    def conv(self, x, idx=None):
        return self.post(self.lin(x))
