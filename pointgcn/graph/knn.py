"""k-nearest neighbours on dense `(B, C, N)` features → indices `(B, N, k)`.

Why our own: PyG's `knn` moved to pyg-lib (not installable here) and torch_cluster's CPU kNN is
slow on feature space (479 ms vs ≈ 21 ms for 64-d, N=4096, see docs/performance.md), and neither
exports to ONNX. A fused `baddbmm` + `topk` does both.

Order contract (both paths): self first, then ascending squared distance, ties broken by the
lower index, so the graph is deterministic. The eager path chunks rows to bound memory
(N=16384 needs ~128 MB per chunk instead of 1 GB per full matrix) and fixes up the rare rows
whose k-th distance is tied. The export path has no Python loop over N (a loop would freeze N
in the traced graph); ONNX TopK itself breaks ties by lower index.
"""
from __future__ import annotations

import contextlib

import torch

from ..errors import InputError

# Elements per distance chunk (rows × N × batch): 2**25 floats = 128 MB.
CHUNK_ELEMENTS = 1 << 25

_EXPORTING = [False]


@contextlib.contextmanager
def export_mode(enabled: bool = True):
    """Route every kNN through the loop-free path (used by the ONNX exporter)."""
    old = _EXPORTING[0]
    _EXPORTING[0] = enabled
    try:
        yield
    finally:
        _EXPORTING[0] = old


def is_exporting() -> bool:
    return _EXPORTING[0] or torch.onnx.is_in_onnx_export()


def _check(x: torch.Tensor, k: int) -> None:
    if x.dim() != 3:
        raise InputError(f"kNN expects features of shape (B, C, N), got {tuple(x.shape)}")
    if k < 1:
        raise InputError(f"k must be at least 1, got {k}")
    n = x.shape[2]
    if k > n:
        raise InputError(f"k={k} neighbours requested but the cloud has only {n} points")


def _rank_scores(q: torch.Tensor, xt: torch.Tensor, sq: torch.Tensor) -> torch.Tensor:
    """Row-ranking scores ‖x_j‖² − 2 q·x_j (the ‖q‖² row constant does not change the order)."""
    return torch.baddbmm(sq.unsqueeze(1), q, xt.transpose(1, 2), alpha=-2.0)


def _order_ties(vals: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Sort the k candidates of each row by (score, index)."""
    by_index = idx.argsort(dim=-1)
    idx = idx.gather(-1, by_index)
    vals = vals.gather(-1, by_index)
    return idx.gather(-1, vals.argsort(dim=-1, stable=True))


def knn(x: torch.Tensor, k: int, chunk_elements: int = CHUNK_ELEMENTS) -> torch.Tensor:
    """Indices `(B, N, k)` of the k nearest neighbours of every point (self first)."""
    _check(x, k)
    if is_exporting():
        return knn_export(x, k)
    b, _, n = x.shape
    with torch.no_grad():
        xt = x.detach().transpose(1, 2).contiguous()
        sq = (xt * xt).sum(-1)
        rows = max(1, min(n, chunk_elements // max(1, b * n)))
        take = min(k + 1, n)  # one extra to detect a tie at the k-th place
        out = torch.empty(b, n, k, dtype=torch.long, device=x.device)
        for s in range(0, n, rows):
            e = min(n, s + rows)
            d = _rank_scores(xt[:, s:e], xt, sq)
            r = torch.arange(e - s, device=x.device)
            d[:, r, r + s] = -float("inf")  # self first, whatever the rounding
            vals, idx = d.topk(take, dim=-1, largest=False, sorted=True)
            if take > k:
                tied = vals[..., k] == vals[..., k - 1]
                vals, idx = vals[..., :k], idx[..., :k]
                if tied.any():  # rare: recompute those rows with a stable full sort
                    bi, ri = tied.nonzero(as_tuple=True)
                    idx[bi, ri] = d[bi, ri].argsort(dim=-1, stable=True)[:, :k]
                    vals[bi, ri] = d[bi, ri].gather(-1, idx[bi, ri])
            out[:, s:e] = _order_ties(vals, idx)
        return out


def knn_export(x: torch.Tensor, k: int) -> torch.Tensor:
    """Loop-free kNN for ONNX export: full distance matrix + TopK, N stays dynamic."""
    with torch.no_grad():
        xt = x.transpose(1, 2)
        sq = (xt * xt).sum(-1)
        d = _rank_scores(xt, xt, sq)
        ar = torch.arange(d.shape[-1], device=x.device)
        d = d.masked_fill(ar.unsqueeze(0) == ar.unsqueeze(1), -float("inf"))
        return d.topk(k, dim=-1, largest=False, sorted=True)[1]


def knn_cluster(x: torch.Tensor, k: int) -> torch.Tensor:
    """Same contract via torch_cluster (optional extra); fast on xyz, slow on wide features."""
    _check(x, k)
    try:
        import torch_cluster
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise InputError("knn_backend 'cluster' needs torch_cluster: make setup WITH_CLUSTER=1") from e
    b, c, n = x.shape
    with torch.no_grad():
        pts = x.detach().transpose(1, 2).reshape(b * n, c).contiguous()
        batch = torch.arange(b, device=x.device).repeat_interleave(n)
        row, col = torch_cluster.knn(pts, pts, k, batch, batch)
        # torch_cluster gives, for query `row`, the neighbour `col`; k per query.
        order = row.argsort(stable=True)
        col = (col[order] - (row[order] // n) * n).view(b, n, k)
        offset = torch.arange(b, device=x.device).view(b, 1, 1) * n
        nb = pts[(col + offset).view(-1)].view(b, n, k, c)
        d = ((nb - pts.view(b, n, 1, c)) ** 2).sum(-1)
        d = d.masked_fill(col == torch.arange(n, device=x.device).view(1, n, 1), -float("inf"))
        return _order_ties(d, col)
