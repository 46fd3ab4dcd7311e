"""k-nearest neighbours on dense `(B, C, N)` features → indices `(B, N, k)`.

Why our own: PyG's `knn` moved to pyg-lib (not installable here) and torch_cluster's CPU kNN is
slow on feature space (482 ms vs 33 ms for 64-d, N=4096, see docs/performance.md), and neither
exports to ONNX. One augmented `bmm` per row chunk plus a selection does both; on CPU each
worker thread runs whole chunks (product, selection, ordering). Both paths score on
features centred per cloud (`centre`): distances are shift-invariant, and float32 scores of
uncentred deep features cancel badly (docs/performance.md, "Faithful kNN").

Order contract (both paths): self first, then ascending squared distance, ties broken by the
lower index, so the graph is deterministic. The eager path chunks rows to bound memory
(4 MB of scores per chunk and thread instead of 1 GB for a full N=16384 matrix) and fixes up
the rare rows whose k-th distance is tied beyond the candidate window. The export path has no Python loop over N (a loop would freeze N
in the traced graph); ONNX TopK itself breaks ties by lower index.

Padded batches (ragged clouds made dense, `pointgcn.graph.pyg`): a `mask` (B, N), True for
real points, gives padded points a +inf score, so no real point ever takes one as neighbour
(a padded row's own neighbours are left to whatever it finds; callers drop those rows).
`point_mask(mask)` makes a mask active for every `DilatedKnn` called inside it, so a model's
blocks need no extra argument.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from ..errors import InputError

# Elements per distance chunk (rows × N × batch): 2**20 floats = 4 MB, which stays in cache
# between the product and the top-k (measured ≈ 2× faster than one 64 MB matrix at N=4096).
CHUNK_ELEMENTS = 1 << 20
# On a GPU there is no cache to stay in, and each chunk is a few kernel launches: 256 MB
# chunks (B 8, N 4096 in two) bound memory at N 16384 without thousands of launches.
GPU_CHUNK_ELEMENTS = 1 << 26
# Candidates beyond k inspected for ties at the k-th place (float32 rounding makes ties common
# in deep feature spaces); a tie running past them falls back to sorting the whole row.
TIE_WINDOW = 8
# torch.topk selects up to SMALL_TAKE candidates, and up to 1/TOPK_SHARE of the row; numpy's
# argpartition beyond (see _nearest). Measured per worker thread with torch 2.13 (docs/
# performance.md, "kNN"): numpy ÷ topk time 0.96–4.4 at take ≤ N/16 (N 1024–4096), mixed
# (0.70–1.3) beyond.
SMALL_TAKE = 12
TOPK_SHARE = 16

_EXPORTING = [False]
# The real-point mask of the padded batch a model is running on (a ContextVar: per thread).
_MASK: contextvars.ContextVar[torch.Tensor | None] = contextvars.ContextVar("point_mask",
                                                                            default=None)


@contextlib.contextmanager
def point_mask(mask: torch.Tensor | None):
    """Within this block every `DilatedKnn` (and pooling head) sees `mask` (B, N), True for
    real points; padding is never a neighbour nor pooled."""
    token = _MASK.set(mask)
    try:
        yield
    finally:
        _MASK.reset(token)


def active_mask() -> torch.Tensor | None:
    return _MASK.get()
_FLOAT64 = [False]


@contextlib.contextmanager
def export_mode(enabled: bool = True):
    """Route every kNN through the loop-free path (used by the ONNX exporter)."""
    old = _EXPORTING[0]
    _EXPORTING[0] = enabled
    try:
        yield
    finally:
        _EXPORTING[0] = old


@contextlib.contextmanager
def float64_scores(enabled: bool = True):
    """Score every eager kNN in float64: the reference a float32 run is compared with, to
    tell how far a deep dynamic-graph model's labels move when only the last bits of its
    neighbour scores do (export/parity.py)."""
    old = _FLOAT64[0]
    _FLOAT64[0] = enabled
    try:
        yield
    finally:
        _FLOAT64[0] = old


def is_exporting() -> bool:
    return _EXPORTING[0] or torch.onnx.is_in_onnx_export()


def _check(x: torch.Tensor, k: int, mask: torch.Tensor | None = None) -> None:
    if x.dim() != 3:
        raise InputError(f"kNN expects features of shape (B, C, N), got {tuple(x.shape)}")
    if mask is not None and (mask.dtype != torch.bool or mask.shape != (x.shape[0], x.shape[2])):
        raise InputError(f"kNN mask must be bool of shape {(x.shape[0], x.shape[2])}, "
                         f"got {mask.dtype} {tuple(mask.shape)}")
    if k < 1:
        raise InputError(f"k must be at least 1, got {k}")
    n = x.shape[2]
    if k > n:
        raise InputError(f"k={k} neighbours requested but the cloud has only {n} points")


def centre(xt: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Features `(B, N, C)` minus their per-cloud, per-channel mean, rounded to a grid of
    1/16 of a power of two below the channel's spread (both over the real points of `mask`,
    so padding never moves a cloud's shift).

    Why: ‖x_j‖² − 2 x_i·x_j cancels badly in float32 when the features' norms are large against
    the distances between neighbours (deep residual features): the rounding error grows with
    ‖x‖², flips near-tied neighbours, and two runtimes (or a GPU) flip different ones.
    Distances do not change under a shift. The mean leaves the bulk of the points near 0 (the
    midrange, tried first, is pulled by outliers: worse than no shift in the last blocks of
    ResGCN-28, docs/performance.md). Rounded to that grid the shift is a short number:
    integer data stay exact after it (exact ties stay ties), and runtimes whose means differ
    in the last bits almost always shift by the same number.
    """
    if mask is None:
        mean = xt.mean(1, keepdim=True)
        spread = (xt - mean).abs().amax(1, keepdim=True)
    else:
        real = mask.unsqueeze(-1).to(xt.dtype)
        mean = (xt * real).sum(1, keepdim=True) / real.sum(1, keepdim=True).clamp_min(1)
        spread = ((xt - mean).abs() * real).amax(1, keepdim=True)
    spread = spread.clamp_min(1e-20)
    grid = torch.pow(2.0, torch.floor(torch.log2(spread)) - 4)
    return xt - torch.round(mean / grid) * grid


def _augment(xt: torch.Tensor, mask: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Queries [x, 1] and keys [−2x, ‖x‖²] of the centred features, so one bmm gives
    ‖x_j‖² − 2 x_i·x_j.

    The row constant ‖x_i‖² does not change a row's order, so it is left out; folding the
    norm into the product avoids a broadcast copy per chunk. The eager and export paths both
    build their scores here: one formulation, the same arithmetic. A masked-out key's ‖x‖²
    is +inf, so its score is +inf in every row: the one place padding is excluded.
    """
    xt = centre(xt, mask)
    ones = torch.ones_like(xt[..., :1])
    sq = (xt * xt).sum(-1, keepdim=True)
    if mask is not None:
        sq = sq.masked_fill(~mask.unsqueeze(-1), float("inf"))
    return torch.cat([xt, ones], -1), torch.cat([-2.0 * xt, sq], -1)


def _nearest(d: torch.Tensor, take: int) -> torch.Tensor:
    """Indices of the `take` smallest entries of each row, ordered by (score, index).

    On CPU `torch.topk` wins while `take` is a small share of the row (≤ N/TOPK_SHARE: the
    dilated graphs of 2048-point room blocks, k·d + 8 ≤ 128); beyond, numpy's introselect
    (`argpartition`, linear time) does. Either way the candidates are ordered by `np.sort` of
    int64 keys, 1.4–6× faster than torch's sort (docs/performance.md); dilated graphs need up
    to k·d = 432. Same indices either way.
    """
    if d.is_cuda or not d.is_contiguous() or d.dtype != torch.float32:
        vals, idx = d.topk(take, dim=-1, largest=False, sorted=False)
        return _sort_by_score_then_index(vals, idx)
    if take <= SMALL_TAKE or take * TOPK_SHARE <= d.shape[-1]:
        vals, idx = d.topk(take, dim=-1, largest=False, sorted=False)
        vals, idx = vals.numpy().reshape(-1, take), idx.numpy().reshape(-1, take)
    else:
        flat = d.numpy().reshape(-1, d.shape[-1])
        idx = np.argpartition(flat, take - 1, axis=-1)[:, :take]
        vals = np.take_along_axis(flat, idx, -1)
    keys = _order_keys(vals, idx)
    keys.sort(axis=-1)
    return torch.from_numpy(keys & 0xFFFFFFFF).view(*d.shape[:-1], take)


def _order_keys(vals: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """int64 keys that order like (float32 score, index): see _sort_by_score_then_index."""
    bits = vals.view(np.int32).astype(np.int64)
    bits ^= (bits >> 31) & 0x7FFFFFFF
    bits <<= 32
    bits |= idx
    return bits


_SCORES = threading.local()


def _scores(shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """This thread's reusable CPU score buffer (≤ CHUNK_ELEMENTS; larger ones are fresh),
    viewed as `shape`.

    Why: pointgcn sets glibc's mmap threshold to 64 KiB (pointgcn/__init__.py), so a fresh
    4 MB chunk of scores is a new mapping whose every page faults on first write. Reused, 16
    2048-point room blocks through the shipped model take half the page faults (917 k → 460 k)
    and 1.6 → 0.9 s of system time (docs/performance.md)."""
    numel = 1
    for v in shape:
        numel *= v
    if numel > CHUNK_ELEMENTS:
        return torch.empty(shape, dtype=like.dtype)
    buf = getattr(_SCORES, "buf", None)
    if buf is None or buf.numel() < numel or buf.dtype != like.dtype:
        # a normal tensor even under inference_mode: an inference tensor could not be written
        # by a later call outside it (training after a latency measurement, say)
        with torch.inference_mode(False):
            buf = _SCORES.buf = torch.empty(numel, dtype=like.dtype)
    return buf[:numel].view(shape)


@functools.lru_cache(maxsize=None)
def _pool(n: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=n, thread_name_prefix="knn")


def _run_chunks(work, chunks: list, device: torch.device) -> None:
    """Run `work(chunk)` for every chunk, on CPU one chunk per thread.

    Each thread does its chunk's product *and* selection with torch's intra-op threads set
    to 1 meanwhile: with torch's OpenMP team active, its threads spin after each product and
    take a core from the numpy selection (measured 4.3 → 2.3 ms per 256-row chunk).
    """
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1 or len(chunks) == 1:
        for c in chunks:
            work(c)
        return
    torch.set_num_threads(1)
    try:
        list(_pool(threads).map(work, chunks))
    finally:
        torch.set_num_threads(threads)


def _sort_by_score_then_index(vals: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Candidate indices ordered by (score, index), one int64 sort for float32 scores.

    A float32's bits, with the low 31 flipped when negative, compare like the float as int32;
    shifted up 32 bits and or-ed with the index they order ties by index. Other dtypes take
    two sorts (by index, then a stable sort by score).
    """
    if vals.dtype == torch.float32:
        bits = vals.contiguous().view(torch.int32)
        bits = bits ^ ((bits >> 31) & 0x7FFFFFFF)
        return ((bits.long() << 32) | idx).sort(dim=-1).values & 0xFFFFFFFF
    by_index = idx.argsort(dim=-1)
    idx, vals = idx.gather(-1, by_index), vals.gather(-1, by_index)
    return idx.gather(-1, vals.argsort(dim=-1, stable=True))


def _fix_wide_ties(d: torch.Tensor, idx: torch.Tensor, k: int) -> None:
    """Rows whose k-th score is shared beyond the candidate window (duplicated points, common
    in resampled blocks): keep the window's strictly smaller entries, then fill with the
    lowest indices of the tied score found over the whole row. Edits `idx` in place."""
    take = idx.shape[-1]
    kth = d.gather(-1, idx[..., k - 1:k])
    wide = (d.gather(-1, idx[..., take - 1:]) == kth).squeeze(-1)
    if not wide.any():
        return
    bi, ri = wide.nonzero(as_tuple=True)
    rows, v = d[bi, ri], kth[bi, ri]                                   # (R, N), (R, 1)
    window = idx[bi, ri]
    less = (rows.gather(-1, window) < v).sum(-1, keepdim=True)          # all in the window
    n = rows.shape[-1]
    cols = torch.arange(n, device=d.device).expand_as(rows)
    tied = torch.where(rows == v, cols, torch.full_like(cols, n)).topk(
        k, dim=-1, largest=False, sorted=True)[0]                      # lowest tied indices
    pos = torch.arange(k, device=d.device).expand(len(bi), k)
    fixed = torch.where(pos < less, window[:, :k], tied.gather(-1, (pos - less).clamp(min=0)))
    idx[bi, ri, :k] = fixed


def knn(x: torch.Tensor, k: int, chunk_elements: int | None = None,
        mask: torch.Tensor | None = None) -> torch.Tensor:
    """Indices `(B, N, k)` of the k nearest neighbours of every point (self first). On a GPU
    every step (product, `topk`, ordering) stays on the device. With `mask` (B, N) padded
    points are never neighbours: a real point with fewer than k real points in its cloud gets
    padded indices at the end, ordered by index (callers drop or refuse those)."""
    _check(x, k, mask)
    if is_exporting():
        return knn_export(x, k) if mask is None else knn_export(x, k, mask)
    if chunk_elements is None:
        chunk_elements = GPU_CHUNK_ELEMENTS if x.is_cuda else CHUNK_ELEMENTS
    b, _, n = x.shape
    # Distances in at least float32 even under autocast (bf16 scores would reorder neighbours).
    if _FLOAT64[0]:
        x = x.double()
    elif x.dtype not in (torch.float32, torch.float64):
        x = x.float()
    with torch.no_grad(), torch.autocast(x.device.type, enabled=False):
        queries, keys = _augment(x.detach().transpose(1, 2), mask)
        keys_t = keys.transpose(1, 2)
        rows = max(1, min(n, chunk_elements // max(1, b * n)))
        take = min(k + TIE_WINDOW, n)  # extra candidates to settle ties at the k-th place
        out = torch.empty(b, n, k, dtype=torch.long, device=x.device)

        @torch.no_grad()  # grad mode is per thread
        def work(span):
            s, e = span
            q = queries[:, s:e]
            if x.device.type != "cpu":
                d = torch.bmm(q, keys_t)
            else:
                d = torch.bmm(q, keys_t, out=_scores((b, e - s, n), q))
            r = torch.arange(e - s, device=x.device)
            d[:, r, r + s] = -float("inf")  # self first, whatever the rounding
            idx = _nearest(d, take)
            if take < n:
                _fix_wide_ties(d, idx, k)
            out[:, s:e] = idx[..., :k]

        _run_chunks(work, [(s, min(n, s + rows)) for s in range(0, n, rows)], x.device)
        return out


def knn_export(x: torch.Tensor, k: int, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Loop-free kNN for ONNX export: full distance matrix + TopK, N stays dynamic."""
    with torch.no_grad():
        queries, keys = _augment(x.transpose(1, 2), mask)
        d = torch.bmm(queries, keys.transpose(1, 2))
        idx = d.topk(k, dim=-1, largest=False, sorted=True)[1]
        # Self first without masking the N×N diagonal (≈ 14% of onnxruntime time): drop self
        # from wherever it landed (or the k-th entry when it did not) and put it in front.
        ar = torch.arange(d.shape[-1], device=x.device).view(1, -1, 1)
        seen = (idx == ar).long().cumsum(-1) > 0
        rest = torch.where(seen[:, :, :-1], idx[:, :, 1:], idx[:, :, :-1])
        return torch.cat([ar.expand(idx.shape[0], -1, 1), rest], -1)


def knn_cluster(x: torch.Tensor, k: int) -> torch.Tensor:
    """Same contract via torch_cluster (optional extra); fast on xyz, slow on wide features.

    Self is forced into the list; among equal distances torch_cluster's choice is kept, so
    with many duplicated points the other neighbours may differ from the dense path's."""
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
        ar = torch.arange(n, device=x.device).view(1, n, 1)
        missing = ~(col == ar).any(-1)  # many duplicates can crowd self out of the k
        col[..., -1] = torch.where(missing, ar[..., 0].expand(b, n), col[..., -1])
        d = d.masked_fill(col == ar, -float("inf"))
        return _sort_by_score_then_index(d, col)
