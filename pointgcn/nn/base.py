"""What every graph conv shares: the `(B, C, N)` interface and the neighbour gather."""
from __future__ import annotations

import torch
from torch import nn

from ..graph.knn import is_exporting


def gather_neighbors(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Channels-last features `(B, N, C)` at neighbour indices `(B, N, k)` → `(B, N, k, C)`.

    One flat row gather (contiguous C-float rows) is faster than `torch.gather` on an expanded
    index and exports to a single ONNX Gather with dynamic N. Its gradient goes through
    `_RowGather`: indexing's own backward (`index_put_` with accumulate) adds rows with
    atomic float adds from several threads on CPU, so the sums' order, and their rounding,
    changed from run to run (SGAS at 2 threads returned different α and genotypes).
    """
    b, n, c = x.shape
    k = idx.shape[-1]
    offset = torch.arange(b, device=idx.device).view(b, 1, 1) * n
    rows, flat = x.reshape(b * n, c), (idx + offset).reshape(-1)
    if x.requires_grad and torch.is_grad_enabled() and not is_exporting():
        return _RowGather.apply(rows, flat).view(b, n, k, c)
    return rows[flat].view(b, n, k, c)


class _RowGather(torch.autograd.Function):
    """`rows[flat]` whose backward is `scatter_add_` along rows: on CPU each output element is
    summed in index order whatever the thread count (bit-identical runs), at the speed of
    the atomic adds it replaces (docs/performance.md)."""

    @staticmethod
    def forward(ctx, rows: torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(flat)
        ctx.n_rows = rows.shape[0]
        return rows[flat]

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (flat,) = ctx.saved_tensors
        index = flat.view(-1, 1).expand_as(grad)
        return grad.new_zeros(ctx.n_rows, grad.shape[1]).scatter_add_(0, index, grad), None


def graph_for(layer: nn.Module, graph: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """`graph(x)`, the neighbour indices, for a layer that reads them, else None: the kNN
    search is most of a layer's cost, and 1×1 convs (and NAS skip / zero ops) never use it."""
    return graph(x) if layer.needs_graph else None


class GraphConv(nn.Module):
    """Base class: `forward(x (B, C_in, N), idx (B, N, k)) -> (B, C_out, N)`.

    Subclasses implement `conv(x, idx)` channels-last, `(B, N, C_in) -> (B, N, C_out)`, which
    keeps neighbour gathers on contiguous rows and lets matmuls read transposed views for free.
    """

    needs_graph = True

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels

    def forward(self, x: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
        return self.conv(x.transpose(1, 2), idx).transpose(1, 2)

    def conv(self, x: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}"
