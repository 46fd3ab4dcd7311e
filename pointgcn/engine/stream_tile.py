"""One spatial tile of a streamed scene: the in-memory voting (inference.predict_room) on the
tile's points plus a halo, giving the labels of the tile's core points exactly as the whole
cloud would.

Why it is exact. A core point's label is the argmax of its mean logits over every kept block
holding it, or, for a point no block sample drew, the mean logits of the nearest drawn point.
Blocks are planned in the whole cloud's grid and frame (`plan_blocks(frame=)`), each draws from
its own generator (rooms.py), and the keep rule looks one block beyond a block: so every block
holding a point within `reach` of the core is planned, drawn and kept as in memory when the
halo reaches `halo_for(block, stride, reach)` (tiles.py). Those blocks run in the whole cloud's
block order, so each of these points sums its votes in the same order, to the same float32
bits. An undrawn core point takes its nearest drawn point among those within `reach` (whose
votes are complete; among equally near ones the first in input order, as in memory:
`rooms.nearest_first`); when that one lies farther than `reach`, a nearer one outside could exist,
and the point is counted in `far` (the caller says so; a larger reach removes it).
"""
from __future__ import annotations

import numpy as np

from ..data.build import SampleSettings
from ..data.rooms import (DEFAULT_FILL_COLOR, VoteAccumulator, iter_blocks, nearest_first,
                          plan_blocks)
from ..data.tiles import TileGrid
from ..io.cloud import PointCloud
from .predictor import Predictor
from .confidence import prediction_confidence
from .task_metrics import predict_labels

MIN_BLOCK_POINTS = 100  # predict_room's min_points: the in-memory path's rule


# What a finished tile leaves on disk per core point (as in-memory segment's output fields).
TILE_RESULT = np.dtype([("pred", "<i4"), ("confidence", "<f4"), ("entropy", "<f4")])

def tile_record(colors: bool) -> np.dtype:
    """A point as a tile file stores it: its row in the input, float32 xyz (and colours)."""
    return np.dtype([("i", "<i8"), ("p", "<f4", 3)] + ([("c", "<f4", 3)] if colors else []))


def outside(xy: np.ndarray, square: tuple[float, float, float, float]) -> np.ndarray:
    """Chebyshev xy distance of shifted points to a core square (0 inside)."""
    x0, x1, y0, y1 = square
    dx = np.maximum(np.maximum(x0 - xy[:, 0], xy[:, 0] - x1), 0)
    dy = np.maximum(np.maximum(y0 - xy[:, 1], xy[:, 1] - y1), 0)
    return np.maximum(dx, dy)


def segment_tile(tile: int, rows: np.ndarray, grid: TileGrid, frame, predictor: Predictor,
                 settings: SampleSettings, reach: float, batch: int = 8, seed: int = 0
                 ) -> tuple[np.ndarray, int]:
    """(the tile's core points in `rows` order as `TILE_RESULT` rows: label, confidence and
    entropy of their mean logits; points counted `far`)."""
    mins = np.asarray(frame[0], np.float64)
    pts = rows["p"]
    colors = rows["c"] if "c" in rows.dtype.names else None
    xy = pts[:, :2].astype(np.float64) - mins[:2]
    core = grid.core(xy) == tile
    if not core.any():
        return np.zeros(0, TILE_RESULT), 0
    near = outside(xy, grid.core_square(tile)) <= reach
    plan = plan_blocks(pts, settings.block, settings.stride, settings.n_points,
                       MIN_BLOCK_POINTS, frame=frame)
    needed = [k for k in range(len(plan)) if near[plan.members(k)].any()]
    votes = VoteAccumulator(len(pts), predictor.n_classes)
    cloud = PointCloud(pts, colors)
    for feats, index in iter_blocks(cloud, plan.select(np.array(needed, np.int64)), batch,
                                    settings.position_norm, DEFAULT_FILL_COLOR, False, seed):
        votes.add(predictor(feats), index)
    voted = votes.voted
    means = votes.sums.copy()  # VoteAccumulator.result's arithmetic, point by point
    means[voted] /= votes.counts[voted, None]
    missing = np.flatnonzero(core & ~voted)
    far = 0
    if len(missing):
        have = np.flatnonzero(voted & near)
        if not len(have):
            have = np.flatnonzero(voted)
        dist, nearest = nearest_first(pts[have], pts[missing])  # ties: as in memory
        far = int((dist >= reach).sum())
        means[missing] = means[have[nearest]]
    labels = predict_labels(predictor.task, means[core].T[None])[0]
    out = np.empty(len(labels), TILE_RESULT)
    out["pred"], out["confidence"], out["entropy"] = prediction_confidence(means[core], labels)
    return out, far
