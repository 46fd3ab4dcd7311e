"""Per-cloud numpy transforms: normalisation and training augmentations.

Every function takes an (N, C) array whose first three columns are xyz (extra columns such as
normals or colours ride along) and returns a new array; random ones take a
`np.random.Generator` so one seed fixes a whole run. Normals (columns 3:6 when `normals=True`)
are rotated with the points and re-normalised after anisotropic scaling.
Written in numpy rather than taken from torch_geometric because the datasets work on numpy
arrays before batching, and PyG's transforms need a `Data` object per cloud.
"""
from __future__ import annotations

import numpy as np


def normalize_unit_sphere(points: np.ndarray) -> np.ndarray:
    """Centre xyz on the centroid and scale so the farthest point lies on the unit sphere
    (PointNet / PointNet++ `pc_normalize`)."""
    out = np.array(points, dtype=np.float32, copy=True)
    xyz = out[:, :3]
    xyz -= xyz.mean(axis=0)
    radius = float(np.sqrt((xyz ** 2).sum(axis=1)).max()) if len(xyz) else 0.0
    if radius > 0:
        xyz /= radius
    return out


def normalize_scale(points: np.ndarray) -> np.ndarray:
    """PyG `NormalizeScale`: centre xyz on the mean, then scale by 0.999999 / max |coordinate|
    so every coordinate lies in (−1, 1). The official DeepGCN S3DIS pipeline applies it per block
    to the block-centred xyz channels. Computed in float64 (PyG's float32 mean differs by
    float32 rounding, ~1e-6)."""
    out = np.array(points, dtype=np.float32, copy=True)
    xyz = out[:, :3].astype(np.float64)
    xyz -= xyz.mean(axis=0)
    peak = float(np.abs(xyz).max()) if len(xyz) else 0.0
    if peak > 0:
        xyz *= (1.0 / peak) * 0.999999
    out[:, :3] = xyz
    return out


def rotation_z(angle: float) -> np.ndarray:
    """3×3 rotation about the z (up) axis by `angle` radians."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rotate_z(points: np.ndarray, rng: np.random.Generator, max_angle: float = 2 * np.pi,
             normals: bool = False) -> np.ndarray:
    """Rotate about z by an angle uniform in [0, max_angle) (x' = R x)."""
    rot = rotation_z(rng.uniform(0.0, max_angle)).astype(np.float32)
    out = np.array(points, dtype=np.float32, copy=True)
    out[:, :3] = out[:, :3] @ rot.T
    if normals:
        out[:, 3:6] = out[:, 3:6] @ rot.T
    return out


def scale_anisotropic(points: np.ndarray, rng: np.random.Generator, low: float = 2 / 3,
                      high: float = 3 / 2, normals: bool = False) -> np.ndarray:
    """Multiply x, y, z by independent factors uniform in [low, high) (DGCNN's augmentation).
    Normals transform with the inverse scale and are re-normalised."""
    factors = rng.uniform(low, high, size=3).astype(np.float32)
    out = np.array(points, dtype=np.float32, copy=True)
    out[:, :3] *= factors
    if normals:
        n = out[:, 3:6] / factors
        out[:, 3:6] = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    return out


def translate(points: np.ndarray, rng: np.random.Generator, shift: float = 0.2) -> np.ndarray:
    """Add one offset, uniform in [−shift, shift) per axis, to every point."""
    out = np.array(points, dtype=np.float32, copy=True)
    out[:, :3] += rng.uniform(-shift, shift, size=3).astype(np.float32)
    return out


def jitter(points: np.ndarray, rng: np.random.Generator, sigma: float = 0.01,
           clip: float = 0.05) -> np.ndarray:
    """Add per-point Gaussian noise N(0, sigma²) clipped to [−clip, clip] (PointNet)."""
    out = np.array(points, dtype=np.float32, copy=True)
    noise = np.clip(sigma * rng.standard_normal((len(out), 3)), -clip, clip)
    out[:, :3] += noise.astype(np.float32)
    return out


def shuffle(points: np.ndarray, rng: np.random.Generator, *others: np.ndarray):
    """Permute the points (and any per-point arrays in `others` the same way).
    Returns the permuted array, or a tuple when `others` are given."""
    order = rng.permutation(len(points))
    if not others:
        return points[order]
    return (points[order],) + tuple(o[order] for o in others)


def point_dropout(points: np.ndarray, rng: np.random.Generator, *others: np.ndarray,
                  max_ratio: float = 0.875):
    """PointNet++ `random_point_dropout`: draw a ratio r ~ U(0, max_ratio), then each point is
    dropped with probability r and replaced by the first point, so N stays fixed (a fixed-size
    batch needs it). Per-point arrays in `others` get the same replacement (`max_ratio` is
    keyword-only, so a labels array passed after rng can never become the ratio)."""
    ratio = rng.uniform(0.0, max_ratio)
    drop = np.flatnonzero(rng.random(len(points)) <= ratio)
    out = np.array(points, copy=True)
    outs = [np.array(o, copy=True) for o in others]
    if len(drop):
        out[drop] = out[0]
        for o in outs:
            o[drop] = o[0]
    return out if not others else (out, *outs)
