"""DeeperGCN's generalized graph conv (GENConv) on dense kNN graphs.

m_ij = ReLU(x_j) + ε;  a_i = AGG_j m_ij;  optional MsgNorm a_i ← s·‖x_i‖·a_i/‖a_i‖;
h_i = MLP(a_i + x_i). When C_in ≠ C_out, x_j and x_i pass through their own linear maps first
(as in PyG's GENConv). The MLP's hidden layers (width 2·C_out) take the conv's norm and
activation, as PyG's GENConv gives its MLP its `norm`; its last layer is linear, and norm and
activation follow it (PostProcess).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .aggregators import make_aggregator
from .base import GraphConv, gather_neighbors
from .norm_act import PostProcess
from .registry import CONVS


@CONVS.register("gen", options=("aggr", "t", "learn_t", "p", "learn_p", "msg_norm",
                                 "learn_msg_scale", "mlp_layers"))
class GENConv(GraphConv):
    def __init__(self, in_channels, out_channels, norm="batch", act="relu", bias=True,
                 act_first=False, aggr: str = "softmax", t: float = 1.0, learn_t: bool = True,
                 p: float = 1.0, learn_p: bool = True, msg_norm: bool = False,
                 learn_msg_scale: bool = True, mlp_layers: int = 1, eps: float = 1e-7):
        super().__init__(in_channels, out_channels)
        if in_channels != out_channels:
            self.lin_src = nn.Linear(in_channels, out_channels, bias=bias)
            self.lin_dst = nn.Linear(in_channels, out_channels, bias=bias)
        self.aggr = make_aggregator(aggr, t=t, learn_t=learn_t, p=p, learn_p=learn_p)
        self.msg_scale = (nn.Parameter(torch.ones(1), requires_grad=learn_msg_scale)
                          if msg_norm else None)
        self.eps = eps
        layers = []
        width = out_channels
        for _ in range(mlp_layers - 1):
            layers += [nn.Linear(width, 2 * out_channels, bias=bias),
                       PostProcess(2 * out_channels, norm, act, act_first)]
            width = 2 * out_channels
        layers.append(nn.Linear(width, out_channels, bias=bias))
        self.mlp = nn.Sequential(*layers)
        self.post = PostProcess(out_channels, norm, act, act_first)

    def conv(self, x, idx):
        src = self.lin_src(x) if hasattr(self, "lin_src") else x
        msg = F.relu(gather_neighbors(src, idx)) + self.eps
        out = self.aggr(msg, dim=2)
        if self.msg_scale is not None:
            out = F.normalize(out, p=2.0, dim=-1) * x.norm(p=2, dim=-1, keepdim=True) * self.msg_scale
        dst = self.lin_dst(x) if hasattr(self, "lin_dst") else x
        return self.post(self.mlp(out + dst))
