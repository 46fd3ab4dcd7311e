"""Point subsampling: random, farthest point, and voxel grid.

Farthest point sampling is the plain O(N·M) greedy loop, vectorised over N (a KD-tree does not
help the greedy max-min step). Voxel subsampling is numpy on an integer voxel key: it uses
Open3D's grid (origin = min bound − voxel/2) and Open3D's mean rule, so `mode="mean"` gives the
same points as `open3d.geometry.PointCloud.voxel_down_sample`, but it also carries labels (which
Open3D drops) and returns the point → voxel map, faster than Open3D's (docs/performance.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from ..errors import InputError


def random_sample(n: int, m: int, rng: np.random.Generator) -> np.ndarray:
    """`m` indices into `n` points: without replacement when m ≤ n; otherwise every point once
    plus m − n random duplicates (so no point is lost when padding a small cloud)."""
    if n <= 0:
        raise InputError("cannot sample from an empty cloud")
    if m <= n:
        return rng.choice(n, m, replace=False)
    return np.concatenate([rng.permutation(n), rng.choice(n, m - n, replace=True)])


def farthest_point_sample(points: np.ndarray, m: int, start: int = 0) -> np.ndarray:
    """Greedy farthest point sampling: start at index `start`, then repeatedly take the point
    whose distance to the chosen set is largest (ties → lowest index). Returns m indices.
    When m exceeds the number of points, the indices repeat after all points are chosen."""
    xyz = np.asarray(points, dtype=np.float64)[:, :3]
    n = len(xyz)
    if n == 0:
        raise InputError("cannot sample from an empty cloud")
    if m > n:
        head = farthest_point_sample(xyz, n, start)
        return np.concatenate([head, head[np.arange(m - n) % n]])
    chosen = np.empty(m, dtype=np.int64)
    nearest = np.full(n, np.inf)
    current = int(start)
    for i in range(m):
        chosen[i] = current
        d = ((xyz - xyz[current]) ** 2).sum(axis=1)
        np.minimum(nearest, d, out=nearest)
        current = int(np.argmax(nearest))
    return chosen


@dataclass
class VoxelResult:
    """Output of `voxel_subsample`: one row per occupied voxel, plus the point → voxel map."""

    points: np.ndarray
    colors: np.ndarray | None
    labels: np.ndarray | None
    inverse: np.ndarray  # (N,) voxel row of every input point
    first: np.ndarray  # (V,) index of the first input point in each voxel


def voxel_keys(points: np.ndarray, voxel: float) -> np.ndarray:
    """Integer voxel index (N, 3) on Open3D's grid: origin at min bound − voxel/2."""
    xyz = np.asarray(points, dtype=np.float64)[:, :3]
    origin = xyz.min(axis=0) - voxel * 0.5
    return np.floor((xyz - origin) / voxel).astype(np.int64)


def voxel_subsample(points: np.ndarray, voxel: float, colors: np.ndarray | None = None,
                    labels: np.ndarray | None = None, mode: str = "mean") -> VoxelResult:
    """Keep one point per occupied voxel of edge `voxel`.

    mode="mean":  position and colour are the voxel means (Open3D's rule); the label is the
                  majority label in the voxel (ties → smallest label id).
    mode="first": every attribute is that of the voxel's first point in input order, so the
                  output is an exact subset of the input (no averaged colours or positions).
    Voxels are ordered by their first point.
    """
    if voxel <= 0:
        raise InputError(f"voxel size must be > 0, got {voxel}")
    if mode not in ("mean", "first"):
        raise InputError(f"voxel mode must be 'mean' or 'first', got {mode!r}")
    if len(points) == 0:
        raise InputError("cannot subsample an empty cloud")
    keys = voxel_keys(points, voxel)
    dims = keys.max(axis=0) + 1
    if float(dims[0]) * float(dims[1]) * float(dims[2]) < 2.0 ** 62:  # one int64 key per voxel
        flat = (keys[:, 0] * dims[1] + keys[:, 1]) * dims[2] + keys[:, 2]
    else:  # the grid is too big for one int64: compare the three keys as rows (slower, exact)
        flat = keys
    _, first, inverse = np.unique(flat, axis=0 if flat.ndim == 2 else None, return_index=True,
                                  return_inverse=True)
    # renumber voxels by first occurrence so the output follows the input order
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    inverse = rank[inverse.ravel()]
    first = first[order]
    n_vox = len(first)
    if mode == "first":
        return VoxelResult(np.asarray(points)[first, :3], None if colors is None else colors[first],
                           None if labels is None else labels[first], inverse, first)
    counts = np.bincount(inverse, minlength=n_vox).astype(np.float64)

    def mean(a):
        a = np.asarray(a, dtype=np.float64)
        cols = [np.bincount(inverse, weights=a[:, j], minlength=n_vox) for j in range(a.shape[1])]
        return (np.stack(cols, axis=1) / counts[:, None]).astype(np.float32)

    out_labels = None
    if labels is not None:
        lab = np.asarray(labels, dtype=np.int64)
        if lab.min() < 0:
            raise InputError("labels must be ≥ 0 for majority voting")
        n_lab = int(lab.max()) + 1
        votes = np.bincount(inverse * n_lab + lab, minlength=n_vox * n_lab).reshape(n_vox, n_lab)
        out_labels = votes.argmax(axis=1)
    return VoxelResult(mean(np.asarray(points)[:, :3]), None if colors is None else mean(colors),
                       out_labels, inverse, first)


def typical_spacing(points: np.ndarray, max_points: int = 200_000, seed: int = 0) -> float:
    """Median distance from a point to its nearest other point (a random subset of at most
    `max_points` for big clouds, which reads sparser than the whole: a coarse figure)."""
    xyz = np.asarray(points, dtype=np.float64)[:, :3]
    if len(xyz) > max_points:
        xyz = xyz[np.random.default_rng(seed).choice(len(xyz), max_points, replace=False)]
    if len(xyz) < 2:
        return 0.0
    dist, _ = cKDTree(xyz).query(xyz, k=2)
    return float(np.median(dist[:, 1]))
