"""S3DIS room → 1 m blocks in the PointNet / DeepGCN format (one place for the 9 channels).

PointNet's `indoor3d_util.room2blocks_plus_normalized`, which produced the published
`indoor3d_sem_seg_hdf5_data` that DeepGCN trains on, defines a block sample as:
  * the room is shifted so its min corner is the origin (PointNet's `collect_point_label`);
  * blocks are squares [x0, x0 + block] × [y0, y0 + block] (both ends inclusive) with
    x0 = i·stride, i = 0 … ceil((max_x − block) / stride), the same in y; all heights;
  * blocks with fewer than 100 points are dropped;
  * a block is resampled to 4096 points: more points → 4096 drawn *with* replacement (PointNet's
    `np.random.choice(N, 4096)`); fewer → all points, then random duplicates;
  * channels 0–1: x, y minus (min of the *sampled* x, y + block/2); channel 2: z unchanged;
    3–5: rgb / 255; 6–8: x, y, z divided by the room's max x, y, z.
The official DeepGCN pipeline then applies PyG's NormalizeScale to channels 0–2 of every block
("normalize_scale" position norm below); the raw PointNet channels are "none".
`rooms.room_to_blocks` cuts a room by this rule with the block planner that inference uses too
(`rooms.plan_blocks`: only blocks over occupied cells, so a far outlier costs its own blocks).
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import ConfigError
from .transforms import normalize_scale

POSITION_NORMS = ("normalize_scale", "none")
BLOCK_CHANNELS = ("x_block", "y_block", "z", "r", "g", "b", "x_room", "y_room", "z_room")


def block_channels(xyz: np.ndarray, rgb01: np.ndarray, room_max: np.ndarray,
                   block: float) -> np.ndarray:
    """The 9 PointNet channels (n, 9) float32 of one block's sampled points.

    xyz: room coordinates shifted so the room's min corner is the origin; rgb01 in [0, 1];
    room_max: the shifted room's max x, y, z (a zero extent is treated as 1 to avoid 0/0).
    """
    xyz = np.asarray(xyz, dtype=np.float64)
    scale = np.where(np.asarray(room_max, dtype=np.float64) > 0, room_max, 1.0)
    out = np.empty((len(xyz), 9), dtype=np.float64)
    out[:, 6:9] = xyz / scale
    out[:, 0] = xyz[:, 0] - (xyz[:, 0].min() + block / 2)
    out[:, 1] = xyz[:, 1] - (xyz[:, 1].min() + block / 2)
    out[:, 2] = xyz[:, 2]
    out[:, 3:6] = rgb01
    return out.astype(np.float32)


def check_position_norm(position_norm: str) -> str:
    if position_norm not in POSITION_NORMS:
        raise ConfigError(f"position_norm must be one of {', '.join(POSITION_NORMS)}, "
                          f"got {position_norm!r}")
    return position_norm


def apply_position_norm(features: np.ndarray, position_norm: str) -> np.ndarray:
    """Channels-last (n, 9) block → the model input the chosen pipeline uses (a new array)."""
    check_position_norm(position_norm)
    out = np.array(features, dtype=np.float32, copy=True)
    if position_norm == "normalize_scale":
        out[:, :3] = normalize_scale(out[:, :3])
    return out


def grid_starts(limit: float, block: float, stride: float) -> np.ndarray:
    """Block start coordinates along one axis: 0, stride, … while the previous block ends before
    `limit` (PointNet's count, at least one block even for rooms narrower than a block)."""
    count = max(1, int(math.ceil((limit - block) / stride)) + 1)
    return np.arange(count) * stride


def sample_block(n: int, m: int, rng: np.random.Generator, replace: bool = True) -> np.ndarray:
    """PointNet's `sample_data` indices: n == m → all; n > m → m random draws (with
    replacement unless `replace=False`); n < m → all n, then m − n random duplicates."""
    if n == m:
        return np.arange(n)
    if n > m:
        return rng.choice(n, m, replace=replace)
    return np.concatenate([np.arange(n), rng.choice(n, m - n, replace=True)])
