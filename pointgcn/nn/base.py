"""What every graph conv shares: the `(B, C, N)` interface and the neighbour gather."""
from __future__ import annotations

import torch
from torch import nn


def gather_neighbors(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Channels-last features `(B, N, C)` at neighbour indices `(B, N, k)` → `(B, N, k, C)`.

    One flat row gather (contiguous C-float rows) is faster than `torch.gather` on an expanded
    index and exports to a single ONNX Gather with dynamic N.
    """
    b, n, c = x.shape
    k = idx.shape[-1]
    offset = torch.arange(b, device=idx.device).view(b, 1, 1) * n
    return x.reshape(b * n, c)[(idx + offset).reshape(-1)].view(b, n, k, c)


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
