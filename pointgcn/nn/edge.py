"""Edge-type convs that take a max over neighbours: EdgeConv and MRConv (DeepGCN, DGCNN).

EdgeConv   h_i = max_j σ(N(Θ·[x_i, x_j − x_i] + b))
computed as  max_j σ(N(c_i + n_j))  with  c = (Θ_a − Θ_b)·x + b,  n = Θ_b·x,
i.e. two per-point products and a gather, never a convolution of the N×k×2C edge tensor
(≈ 2× faster, same result). In eval, when N is a per-channel affine map and σ is monotone,
max_j commutes with them (a negative slope turns the max into a min), so only the gathered
n_j are reduced and N, σ run on N points instead of N·k edges.

MRConv     h_i = σ(N(Θ·[x_i, max_j (x_j − x_i)] + b))
"""
from __future__ import annotations

import torch
from torch import nn

from ..graph.knn import is_exporting
from .base import GraphConv, gather_neighbors
from .norm_act import PostProcess, channel_scale
from .registry import CONVS


def edge_max(center: torch.Tensor, nbr: torch.Tensor, idx: torch.Tensor,
             post: PostProcess) -> torch.Tensor:
    """max over j of post(center_i + nbr_j), channels-last `(B, N, C)` → `(B, N, C)`."""
    g = gather_neighbors(nbr, idx)
    if not post.max_commutes():
        return post(center.unsqueeze(2) + g).amax(2)
    top = g.amax(2)
    scale = channel_scale(post.norm)
    if scale is not None and (is_exporting() or bool((scale < 0).any())):
        top = torch.where(scale >= 0, top, g.amin(2))
    return post(center + top)


class _PairConv(GraphConv):
    """A conv with one `(C_out, 2·C_in)` linear map over a pair of per-point features."""

    def __init__(self, in_channels: int, out_channels: int, norm: str = "batch",
                 act: str = "relu", bias: bool = True, act_first: bool = False):
        super().__init__(in_channels, out_channels)
        self.lin = nn.Linear(2 * in_channels, out_channels, bias=bias)
        self.post = PostProcess(out_channels, norm, act, act_first)


@CONVS.register("edge")
class EdgeConv(_PairConv):
    """EdgeConv with the weight stored as one `(C_out, 2·C_in)` matrix over [x_i, x_j − x_i]."""

    def conv(self, x, idx):
        c = self.in_channels
        w_center, w_diff = self.lin.weight[:, :c], self.lin.weight[:, c:]
        both = torch.matmul(x, torch.cat([w_center - w_diff, w_diff], 0).t())
        center, nbr = both.split(self.out_channels, dim=-1)
        if self.lin.bias is not None:
            center = center + self.lin.bias
        return edge_max(center, nbr, idx, self.post)


@CONVS.register("mr")
class MRConv(_PairConv):
    """Max-relative graph conv (DeepGCN): Θ over [x_i, max_j (x_j − x_i)]."""

    def conv(self, x, idx):
        rel = gather_neighbors(x, idx).amax(2) - x
        return self.post(self.lin(torch.cat([x, rel], dim=-1)))
