"""Rooms → 1 m blocks: one planner for training blocks and whole-room inference.

`plan_blocks` lays PointNet's block grid (blocks.py: start 0, stride, …, inclusive ends) over
the cloud's xy extent, which by construction puts every point in at least one block. Points are
bucketed once by stride cell (an int64 permutation, the sorted float64 x, y and the sorted ids
of the occupied cells), so a block's candidates are a few contiguous slices; only blocks over
occupied cells are looked at, so a far outlier costs its own few blocks, not the empty grid in
between. Blocks with fewer than `min_points` points are dropped — always for training
(`room_to_blocks`, PointNet's h5 blocks), for inference (`cover_every_point`) only when each of
their points lies in a block of at least `min_points` points. That rule looks only at blocks
within one block's reach, never at the order blocks are visited in, so a spatial tile of the
cloud with a halo of two blocks decides its own blocks exactly as the whole cloud does
(engine/streaming.py relies on it); `frame=` gives such a tile the whole cloud's min corner
and extent.

Inference (run by engine/inference.py): `iter_blocks` builds at most `batch` blocks at a time.
Each block sample carries the same 9 channels as training (block_channels + position norm) and
the indices of its points; a block's random draws come from its own generator, keyed by the
seed and its grid position (`BlockPlan.grid`), so they do not depend on which other blocks are
visited; `VoteAccumulator` sums the logits of every sample into an (N, C)
float32 array and returns the mean per point. A point no sample drew (big blocks hold more than n_points) takes the mean
logits of its nearest voted point; `cover_all=True` instead splits big blocks into several
samples so every point is drawn.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np
from scipy.spatial import cKDTree

from ..errors import ConfigError, InputError
from ..io.cloud import PointCloud
from ..seeds import item_rng
from ..tasks import DEFAULT_POINTS
from .blocks import apply_position_norm, block_channels, check_position_norm, sample_block

DEFAULT_FILL_COLOR = 0.5  # rgb channels of clouds without colours: mid grey
MAX_CELLS_PER_AXIS = 2 ** 31  # stride cells along x or y: int64 cell ids cannot overflow
MAX_CANDIDATE_BLOCKS = 2 ** 24  # blocks looked at by plan_blocks (≈ 7·10¹⁰ points to infer)


@dataclass
class BlockPlan:
    """Where the blocks of one cloud are; indices of a block's points come from `members`."""

    mins: np.ndarray  # (3,) min corner subtracted from every point
    room_max: np.ndarray  # (3,) max of the shifted cloud (channels 6–8 divide by it)
    block: float
    stride: float
    n_points: int
    starts: np.ndarray  # (K, 2) block start x, y (shifted coordinates)
    counts: np.ndarray  # (K,) points in each block
    order: np.ndarray  # (N,) point indices sorted by stride cell
    sorted_xy: np.ndarray  # (N, 2) float64 shifted x, y in `order` (contiguous per cell)
    cells: np.ndarray  # (M,) ascending ids cx * ncy + cy of the occupied stride cells
    cell_offsets: np.ndarray  # (M + 1,) CSR offsets into order
    ncx: int
    ncy: int

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def n_cloud_points(self) -> int:
        return len(self.order)

    def samples_per_block(self, cover_all: bool) -> np.ndarray:
        if not cover_all:
            return np.ones(len(self), dtype=np.int64)
        return np.maximum(1, -(-self.counts // self.n_points))

    @property
    def grid(self) -> np.ndarray:
        """(K, 2) int64 grid indices (i, j) of the blocks: start = index × stride."""
        return np.rint(self.starts / self.stride).astype(np.int64)

    def select(self, blocks: np.ndarray) -> "BlockPlan":
        """The same plan with only the blocks `blocks` (indices, in that order)."""
        return dataclasses.replace(self, starts=self.starts[blocks], counts=self.counts[blocks])

    def members(self, k: int) -> np.ndarray:
        """Indices of the points in block k (inclusive bounds), ascending."""
        return _members(self, self.starts[k])


def _cell_range(lo: float, hi: float, stride: float, n: int) -> range:
    # Cells are floor(coordinate / stride); division by a positive number and floor are
    # monotone in floating point, so lo ≤ v ≤ hi implies cell(lo) ≤ cell(v) ≤ cell(hi).
    return range(min(n - 1, int(math.floor(lo / stride))),
                 min(n - 1, int(math.floor(hi / stride))) + 1)


def _members(plan: BlockPlan, start: np.ndarray, ascending: bool = True) -> np.ndarray:
    x0, y0 = float(start[0]), float(start[1])
    x1, y1 = x0 + plan.block, y0 + plan.block
    xs, ys = _cell_range(x0, x1, plan.stride, plan.ncx), _cell_range(y0, y1, plan.stride, plan.ncy)
    row = np.arange(xs.start, xs.stop, dtype=np.int64) * plan.ncy
    lo = plan.cell_offsets[np.searchsorted(plan.cells, row + ys.start)]
    hi = plan.cell_offsets[np.searchsorted(plan.cells, row + ys.stop)]
    slices = [slice(a, b) for a, b in zip(lo, hi)]
    xy = np.concatenate([plan.sorted_xy[s] for s in slices])
    cand = np.concatenate([plan.order[s] for s in slices])
    inside = (xy[:, 0] >= x0) & (xy[:, 0] <= x1) & (xy[:, 1] >= y0) & (xy[:, 1] <= y1)
    return np.sort(cand[inside]) if ascending else cand[inside]


def _blocks_scanning(cell: np.ndarray, reach: int, n_blocks: int, n_cells: int, block: float,
                     stride: float) -> tuple[np.ndarray, np.ndarray]:
    """Along one axis: (M, reach + 2) indices cell - reach … cell + 1 of the blocks whose
    `_cell_range` may hold each cell (block i starts at i·stride and scans cells ≈ i …
    i + block/stride; one spare index each side), and the mask of those whose range,
    computed with `_cell_range`'s floats, holds it."""
    idx = cell[:, None] + np.arange(-reach, 2)
    start = idx * stride
    first = np.minimum(n_cells - 1, np.floor(start / stride))
    last = np.minimum(n_cells - 1, np.floor((start + block) / stride))
    return idx, (idx >= 0) & (idx < n_blocks) & (first <= cell[:, None]) & (cell[:, None] <= last)


def _check_extent(lo: np.ndarray, hi: np.ndarray, stride: float) -> None:
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        raise InputError("the cloud has NaN or infinite coordinates; block partitioning needs "
                         "finite x, y, z")
    for axis in (0, 1):
        span = hi[axis] - lo[axis]
        if not span / stride < MAX_CELLS_PER_AXIS:
            raise InputError(f"the cloud spans {span:.3g} m in {'xy'[axis]}; block partitioning "
                             f"with stride {stride:g} m needs less than "
                             f"{MAX_CELLS_PER_AXIS * stride:.3g} m (remove far outliers?)")
    far = max(np.abs(lo).max(), np.abs(hi).max())
    if far > 1e15:
        raise InputError(f"the cloud has a coordinate of {far:.3g} m; block partitioning needs "
                         f"|x|, |y|, |z| ≤ 1e15 m (float64 loses metres beyond)")


def plan_blocks(points: np.ndarray, block: float = 1.0, stride: float = 0.5,
                n_points: int = DEFAULT_POINTS["segmentation"], min_points: int = 100,
                cover_every_point: bool = True,
                frame: tuple[np.ndarray, np.ndarray] | None = None) -> BlockPlan:
    """Cover the cloud `points` (N, ≥3) with blocks; see the module docstring. Without
    `cover_every_point`, every block under `min_points` is dropped (PointNet's training rule).
    `frame` = (min corner, extent) of the whole cloud when `points` are a part of it: the grid,
    cells and location channels are then the whole cloud's."""
    if not (block > 0 and 0 < stride <= block):
        raise ConfigError(f"need 0 < stride ≤ block, got block={block}, stride={stride}")
    if n_points < 1:
        raise ConfigError(f"n_points must be ≥ 1, got {n_points}")
    xyz = np.asarray(points)[:, :3]
    if len(xyz) == 0:
        raise InputError("cannot block an empty cloud")
    if frame is None:
        mins, maxs = xyz.min(axis=0).astype(np.float64), xyz.max(axis=0).astype(np.float64)
        _check_extent(mins, maxs, stride)
        room_max = maxs - mins
    else:
        mins, room_max = (np.asarray(a, np.float64).reshape(3) for a in frame)
        _check_extent(mins, mins + room_max, stride)
        lo, hi = xyz.min(axis=0) - mins, xyz.max(axis=0) - mins
        if (lo < 0).any() or (hi > room_max).any():
            raise ConfigError("frame: the points lie outside the given min corner and extent")
    ncx = int(math.floor(room_max[0] / stride)) + 1
    ncy = int(math.floor(room_max[1] / stride)) + 1
    xy = xyz[:, :2].astype(np.float64) - mins[:2]
    cell = (np.minimum(np.floor(xy[:, 0] / stride).astype(np.int64), ncx - 1) * ncy
            + np.minimum(np.floor(xy[:, 1] / stride).astype(np.int64), ncy - 1))
    order = np.argsort(cell, kind="stable")
    cell = cell[order]
    first = np.flatnonzero(np.concatenate([[True], cell[1:] != cell[:-1]]))
    cells, offsets = cell[first], np.append(first, len(cell))
    sorted_xy = xy[order]
    del xy, cell
    # len(grid_starts(room_max[a], block, stride)) without building the (maybe long) grid
    nbx, nby = (max(1, int(math.ceil((room_max[a] - block) / stride)) + 1) for a in (0, 1))
    reach = int(math.ceil(block / stride)) + 1
    n_candidates = min(nbx * nby, len(cells) * (reach + 2) ** 2)
    if n_candidates > MAX_CANDIDATE_BLOCKS:
        raise InputError(f"the cloud spans {room_max[0]:.3g} × {room_max[1]:.3g} m over "
                         f"{len(cells)} occupied {stride:g} m cells: {n_candidates:.3g} blocks "
                         f"to look at, more than the {MAX_CANDIDATE_BLOCKS} block partitioning "
                         f"handles (crop the cloud or use a larger stride)")
    if frame is None and n_candidates == nbx * nby:  # small grid: all blocks (grid_starts)
        ids = np.arange(nbx * nby, dtype=np.int64)
    else:  # blocks over occupied cells, ascending ids i * nby + j: the full grid's order
        bx, okx = _blocks_scanning(cells // ncy, reach, nbx, ncx, block, stride)
        by, oky = _blocks_scanning(cells % ncy, reach, nby, ncy, block, stride)
        ids = np.unique((bx[:, :, None] * nby + by[:, None, :])[okx[:, :, None] & oky[:, None, :]])
    starts = np.stack([ids // nby * stride, ids % nby * stride], axis=1)
    plan = BlockPlan(mins, room_max, float(block), float(stride), int(n_points), starts,
                     np.zeros(len(starts), np.int64), order, sorted_xy, cells, offsets, ncx, ncy)
    counts = np.array([len(_members(plan, s, ascending=False)) for s in starts], dtype=np.int64)
    keep = counts >= max(1, min_points)
    if cover_every_point and min_points > 1 and not keep.all():
        covered = np.zeros(len(xyz), dtype=bool)
        for k in np.flatnonzero(keep):
            covered[plan.members(k)] = True
        for k in np.flatnonzero(~keep & (counts > 0)):
            keep[k] = not covered[plan.members(k)].all()  # by big blocks only: order-free
    plan.starts, plan.counts = starts[keep], counts[keep]
    return plan


def room_to_blocks(xyz: np.ndarray, rgb255: np.ndarray, labels: np.ndarray,
                   rng: np.random.Generator, n_points: int = DEFAULT_POINTS["segmentation"],
                   block: float = 1.0, stride: float = 0.5, min_points: int = 100,
                   replace: bool = True):
    """Training blocks of one room as PointNet's h5 (blocks.py has the rule): data
    (B, n_points, 9) float32, labels (B, n_points) int64, blocks in x-major grid order.
    `replace=False` draws big blocks without replacement (not PointNet's rule)."""
    xyz = np.asarray(xyz, dtype=np.float64)
    plan = plan_blocks(xyz, block, stride, n_points, min_points, cover_every_point=False)
    rgb01 = np.asarray(rgb255, dtype=np.float64) / 255.0
    labels = np.asarray(labels, dtype=np.int64)
    datas, labs = [], []
    for k in range(len(plan)):
        idx = plan.members(k)
        chosen = idx[sample_block(len(idx), n_points, rng, replace)]
        datas.append(block_channels(xyz[chosen] - plan.mins, rgb01[chosen], plan.room_max,
                                    block))
        labs.append(labels[chosen])
    if not datas:
        return (np.zeros((0, n_points, 9), np.float32), np.zeros((0, n_points), np.int64))
    return np.stack(datas), np.stack(labs)


def iter_blocks(cloud: PointCloud | np.ndarray, plan: BlockPlan, batch: int = 8,
                position_norm: str = "normalize_scale", fill_color: float = DEFAULT_FILL_COLOR,
                cover_all: bool = False, seed: int = 0
                ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (features (B, 9, n_points) float32, point_index (B, n_points) int64), B ≤ batch.

    A block with more than n_points points gives one sample of n_points distinct points (or,
    with cover_all, ceil(count / n_points) samples that together draw every point, the last
    one padded with other points of the block); a smaller block gives all its points plus
    random duplicates. Clouds without colours get `fill_color` in the rgb channels.
    """
    check_position_norm(position_norm)
    if batch < 1:
        raise ConfigError(f"batch must be ≥ 1, got {batch}")
    if isinstance(cloud, np.ndarray):
        cloud = PointCloud(cloud[:, :3])
    points = cloud.points
    if len(points) != plan.n_cloud_points:
        raise InputError(f"the plan is for {plan.n_cloud_points} points, the cloud has "
                         f"{len(points)}")
    colors = cloud.colors
    n = plan.n_points
    feats, index = [], []
    for k, (i, j) in enumerate(plan.grid.tolist()):
        members = plan.members(k)
        rng = item_rng(seed, "block", i, j)
        for chosen in _samples(members, n, rng, cover_all):
            xyz = points[chosen].astype(np.float64) - plan.mins
            rgb = (colors[chosen] if colors is not None
                   else np.full((n, 3), fill_color, dtype=np.float32))
            f = block_channels(xyz, rgb, plan.room_max, plan.block)
            feats.append(apply_position_norm(f, position_norm).T)
            index.append(chosen)
            if len(feats) == batch:
                yield np.stack(feats), np.stack(index)
                feats, index = [], []
    if feats:
        yield np.stack(feats), np.stack(index)


def _samples(members: np.ndarray, n: int, rng: np.random.Generator, cover_all: bool):
    count = len(members)
    if count <= n:
        yield np.concatenate([members, members[rng.choice(count, n - count, replace=True)]])
    elif not cover_all:
        yield members[np.sort(rng.choice(count, n, replace=False))]
    else:
        perm = rng.permutation(count)
        for s in range(0, count, n):
            part = perm[s:s + n]
            if len(part) < n:
                rest = np.setdiff1d(perm, part, assume_unique=True)
                part = np.concatenate([part, rng.choice(rest, n - len(part), replace=False)])
            yield members[np.sort(part)]


class VoteAccumulator:
    """Sum of the logits every block sample gives each original point, in (N, C) float32."""

    def __init__(self, n_points: int, n_classes: int):
        self.sums = np.zeros((int(n_points), int(n_classes)), dtype=np.float32)
        self.counts = np.zeros(int(n_points), dtype=np.int32)

    def add(self, logits, point_index) -> None:
        """logits (B, C, n) — the model's (B, C, N) layout, numpy or torch — for the points
        `point_index` (B, n). A point drawn twice in one sample votes twice."""
        logits = np.asarray(logits.detach().cpu() if hasattr(logits, "detach") else logits,
                            dtype=np.float32)
        idx = np.asarray(point_index, dtype=np.int64)
        if logits.ndim != 3 or logits.shape[1] != self.sums.shape[1] or \
                logits.shape[0] != idx.shape[0] or logits.shape[2] != idx.shape[1]:
            raise InputError(f"logits {tuple(logits.shape)} do not match point_index "
                             f"{tuple(idx.shape)} and {self.sums.shape[1]} classes")
        flat = idx.reshape(-1)
        np.add.at(self.sums, flat, logits.transpose(0, 2, 1).reshape(-1, self.sums.shape[1]))
        np.add.at(self.counts, flat, 1)

    @property
    def voted(self) -> np.ndarray:
        return self.counts > 0

    def result(self, points: np.ndarray | None = None, reduce: str = "mean") -> np.ndarray:
        """(N, C) mean (or sum) logits per point. Points without votes take the logits of the
        nearest voted point (by xyz), so `points` is needed when any point went undrawn."""
        if reduce not in ("mean", "sum"):
            raise ConfigError(f"reduce must be 'mean' or 'sum', got {reduce!r}")
        voted = self.voted
        if not voted.any():
            raise InputError("no votes were added")
        out = self.sums.copy()
        if reduce == "mean":
            out[voted] /= self.counts[voted, None]
        missing = np.flatnonzero(~voted)
        if len(missing):
            if points is None:
                raise InputError(f"{len(missing)} points have no votes; pass points= to fill "
                                 f"them from their nearest voted point")
            have = np.flatnonzero(voted)
            xyz = np.asarray(points)[:, :3]
            _, nearest = nearest_first(xyz[have], xyz[missing])
            out[missing] = out[have[nearest]]
        return out


def nearest_first(candidates: np.ndarray, queries: np.ndarray, k: int = 8,
                  rows: int = 1 << 14) -> tuple[np.ndarray, np.ndarray]:
    """(distance, index into `candidates`) of each query's nearest candidate; among equally
    near ones the first. A k-d tree returns any of them, depending on which other points it
    holds, and quantised coordinates (LAS scales) make exact ties common: a streamed tile,
    which holds a part of the cloud, must pick what the whole cloud picks (engine/stream_tile.py).
    The two nearest settle most queries; a tie asks for `k`, then for every candidate as near.
    Queries go `rows` at a time (their candidates' float64 copies stay small)."""
    tree = cKDTree(candidates, balanced_tree=False, compact_nodes=False)
    best = np.empty(len(queries), np.int64)
    dist = np.empty(len(queries), np.float64)
    for start in range(0, len(queries), rows):
        q64 = queries[start:start + rows].astype(np.float64)
        part, low, tied = _first_of(tree, candidates, q64, 2)
        if tied.any():  # the two nearest are equally near: look at more
            sub = np.flatnonzero(tied)
            part[sub], low[sub], more = _first_of(tree, candidates, q64[sub], k)
            for row in sub[more]:  # every one of the k is as near: all within that distance
                near = np.asarray(tree.query_ball_point(q64[row], np.sqrt(low[row]) * (1 + 1e-9)
                                                        + 1e-12))
                d = ((candidates[near].astype(np.float64) - q64[row]) ** 2).sum(axis=1)
                part[row] = near[d == d.min()].min()
        best[start:start + rows], dist[start:start + rows] = part, np.sqrt(low)
    return dist, best


def _first_of(tree, candidates: np.ndarray, q64: np.ndarray, k: int):
    """Among each query's k nearest: the first of the nearest (exact float64 squared distance,
    whatever the tree computed), that distance, and whether all k are as near (more may be)."""
    k = min(k, tree.n)
    _, idx = tree.query(q64, k=k)
    idx = idx.reshape(len(q64), k)
    d2 = ((candidates[idx].astype(np.float64) - q64[:, None, :]) ** 2).sum(axis=2)
    low = d2.min(axis=1)
    tied = d2 == low[:, None]
    return (np.where(tied, idx, tree.n).min(axis=1), low,
            tied.all(axis=1) & (k < tree.n) if k > 1 else np.zeros(len(q64), bool))
