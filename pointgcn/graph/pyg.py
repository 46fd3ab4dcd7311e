"""PyG-style kNN graphs from our dense kNN: `knn_graph(x, k, batch)` → `edge_index` (2, E).

Why: `torch_geometric.nn.knn_graph` needs pyg-lib or torch_cluster, which pip cannot install
on many machines; this one runs on `knn` (faster on features, no compiled extension).

Conventions are `torch_geometric.nn.knn_graph`'s: `x` (N, F) nodes, `batch` (N,) sorted
cloud ids, a point's neighbours only in its own cloud, self-loops only with `loop=True`; a
cloud with fewer than k other points gives each of its points all of them. With
`flow="source_to_target"` row 0 holds the neighbour j (source) and row 1 the centre i
(target), so messages flow j → i; `"target_to_source"` swaps the rows. Edges come grouped by
centre in node order, each centre's neighbours nearest first (ties by lower index).
One difference: with duplicated points PyG may drop a duplicate instead of the point itself;
here the point itself is the one left out (self is always first in `knn`).

Dilation d keeps every d-th of the k·d nearest: of the list that starts with self when
`loop=True` (exactly `DilatedKnn`'s graph), of the list without self otherwise.
"""
from __future__ import annotations

import torch

from ..errors import InputError
from .knn import knn

FLOWS = ("source_to_target", "target_to_source")


def dense_batch(x: torch.Tensor, batch: torch.Tensor | None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Ragged nodes (N, F) with sorted cloud ids → zero-padded (B, N_max, F) and the real-point
    mask (B, N_max) (None without `batch`: one cloud, nothing padded)."""
    if batch is None:
        return x.unsqueeze(0), None
    if batch.dim() != 1 or batch.shape[0] != x.shape[0]:
        raise InputError(f"batch must hold one cloud id per point ({x.shape[0]}), "
                         f"got shape {tuple(batch.shape)}")
    if batch.numel() and (batch.min() < 0 or (batch[1:] < batch[:-1]).any()):
        raise InputError("batch must be sorted cloud ids ≥ 0 (as torch_geometric's Batch "
                         "holds them)")
    from torch_geometric.utils import to_dense_batch  # heavy import: only ragged batches need it

    return to_dense_batch(x, batch.long())


def knn_graph(x: torch.Tensor, k: int, batch: torch.Tensor | None = None, dilation: int = 1,
              loop: bool = False, flow: str = "source_to_target") -> torch.Tensor:
    """`edge_index` (2, E) int64 of every point's k nearest neighbours (see module doc)."""
    if x.dim() != 2:
        raise InputError(f"knn_graph expects node features (N, F), got {tuple(x.shape)}")
    for name, v in (("k", k), ("dilation", dilation)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise InputError(f"{name} must be an integer ≥ 1, got {v!r}")
    if flow not in FLOWS:
        raise InputError(f"flow must be one of {FLOWS}, got {flow!r}")
    if x.shape[0] == 0:
        return torch.empty(2, 0, dtype=torch.long, device=x.device)
    dense, mask = dense_batch(x, batch)
    b, n_max, _ = dense.shape
    counts = mask.sum(1) if mask is not None else torch.full((1,), n_max, device=x.device)
    take = min(k * dilation + (0 if loop else 1), n_max)
    idx = knn(dense.transpose(1, 2), take, mask=mask)        # (B, N_max, take), self first
    if not loop:
        idx = idx[..., 1:]
    idx = idx[..., ::dilation][..., :k]
    # Real centres, real neighbours: padding sorts last (+inf score), so striding first and
    # dropping padding after is the same as striding the real neighbours only.
    limit = counts.view(b, 1, 1)
    rows = torch.arange(n_max, device=x.device).view(1, n_max, 1).expand_as(idx)
    keep = (rows < limit) & (idx < limit)
    start = (counts.cumsum(0) - counts).view(b, 1, 1)
    centre, neighbour = (rows + start)[keep], (idx + start)[keep]
    pairs = (neighbour, centre) if flow == "source_to_target" else (centre, neighbour)
    return torch.stack(pairs)
