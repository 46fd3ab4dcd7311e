"""Cells: the supernet cell (9 mixed edges) and the stand-alone cell of a genotype.

Both take the outputs of the two previous cells, s0 (older) and s1, bring each to the cell
width with a 1×1 conv, build one dilated kNN graph for all their graph ops (on s0, as the SGAS
code does; dilation = cell index + 1) and output the concatenation of the three intermediate
nodes, `(B, 3·C, N)`. A node is the sum of its incoming edges.
"""
from __future__ import annotations

import torch
from torch import nn

from ..graph import DilatedKnn
from ..nn import Conv1x1, graph_for
from .genotype import EDGES, N_INPUTS, N_NODES, Genotype
from .ops import NONE, MixedOp, make_op, op_needs_graph

UNDECIDED = -1


class _CellBase(nn.Module):
    def __init__(self, c_prev_prev: int, c_prev: int, channels: int, k: int, dilation: int,
                 stochastic: bool, epsilon: float, knn_backend: str, norm: str, act: str,
                 uses=(True, True)):
        super().__init__()
        self.channels = channels
        self.out_channels = N_NODES * channels
        # A 1×1 conv whose state no op reads would get no gradient (and upset DDP): leave it out.
        self.pre0 = Conv1x1(c_prev_prev, channels, norm, act, bias=False) if uses[0] else None
        self.pre1 = Conv1x1(c_prev, channels, norm, act, bias=False) if uses[1] else None
        self.graph = DilatedKnn(k, dilation, stochastic, epsilon, knn_backend)

    def _inputs(self, s0: torch.Tensor, s1: torch.Tensor) -> list:
        return [self.pre0(s0, None) if self.pre0 is not None else None,
                self.pre1(s1, None) if self.pre1 is not None else None]

    def _empty(self, s0: torch.Tensor) -> torch.Tensor:
        return s0.new_zeros(s0.shape[0], self.channels, s0.shape[2])


class SearchCell(_CellBase):
    """The supernet cell: every edge is a MixedOp over all candidate ops."""

    def __init__(self, c_prev_prev, c_prev, channels, k, dilation, stochastic=False,
                 epsilon=0.0, knn_backend="dense", norm="batch", act="relu", **conv_options):
        super().__init__(c_prev_prev, c_prev, channels, k, dilation, stochastic, epsilon,
                         knn_backend, norm, act)
        self.edges = nn.ModuleList(MixedOp(channels, norm, act, **conv_options) for _ in EDGES)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor,
                selected: list[int]) -> torch.Tensor:
        """`weights` (9, n_ops) mixing weights; `selected[e]` = −1 undecided (mixed),
        0 pruned, else the op index the edge is fixed to."""
        need_graph = any(s == UNDECIDED or (s > NONE and op_needs_graph(self.edges[e].ops[s]))
                         for e, s in enumerate(selected))
        idx = self.graph(s0) if need_graph else None
        states = self._inputs(s0, s1)
        for node in range(N_NODES):
            total = None
            for e, (n, src) in enumerate(EDGES):
                if n != node or selected[e] == NONE:
                    continue
                chosen = None if selected[e] == UNDECIDED else selected[e]
                out = self.edges[e](states[src], idx, weights[e], chosen)
                total = out if total is None else total + out
            states.append(total if total is not None else self._empty(s0))
        return torch.cat(states[N_INPUTS:], dim=1)


class GenotypeCell(_CellBase):
    """A stand-alone cell: only the genotype's kept edges, each one op."""

    def __init__(self, genotype: Genotype, c_prev_prev, c_prev, channels, k, dilation,
                 stochastic=False, epsilon=0.0, knn_backend="dense", norm="batch", act="relu",
                 **conv_options):
        kept = [(node, op, src) for node, pairs in enumerate(genotype.nodes)
                for op, src in pairs]
        # State s is read directly, or (s ≥ 2) an intermediate node that reads 0 or 1 itself;
        # the inputs to preprocess are those that some kept edge reads.
        read = {src for _, _, src in kept}
        super().__init__(c_prev_prev, c_prev, channels, k, dilation, stochastic, epsilon,
                         knn_backend, norm, act, uses=(0 in read, 1 in read))
        self.kept = [(node, src) for node, _, src in kept]
        self.ops = nn.ModuleList(make_op(op, channels, norm, act, **conv_options)
                                 for _, op, _ in kept)
        self.needs_graph = any(op_needs_graph(op) for op in self.ops)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        idx = graph_for(self, self.graph, s0)
        states = self._inputs(s0, s1)
        for node in range(N_NODES):
            total = None
            for (n, src), op in zip(self.kept, self.ops):
                if n == node:
                    out = op(states[src], idx)
                    total = out if total is None else total + out
            states.append(total if total is not None else self._empty(s0))
        return torch.cat(states[N_INPUTS:], dim=1)
