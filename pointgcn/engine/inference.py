"""Run a predictor over a cloud: the pre- and post-processing shared by every runtime
(PyTorch, onnxruntime) and every stage.

segment: any cloud → overlapping blocks (data/rooms.py: the training block size, stride and 9
channels) → per-point mean logits over all blocks covering each *original* point
(`predict_room`) → labels.
classify: any cloud or mesh sample → unit sphere → N points (votes over random subsets) →
class probabilities.
Every stage first checks that the cloud has enough *distinct* points for the model's widest
graph (k × largest dilation, `Predictor.min_points`): with fewer, neighbourhoods are filled
with repeats of the same points, which no training sample had, and the answer would look
confident while meaning nothing. Sparse blocks *inside* a big enough room are resampled with
replacement, exactly as in training.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..data.build import SampleSettings
from ..data.rooms import DEFAULT_FILL_COLOR, VoteAccumulator, iter_blocks, plan_blocks
from ..data.transforms import normalize_unit_sphere
from ..errors import InputError
from ..io.cloud import PointCloud
from ..tasks import DEFAULT_POINTS
from .predictor import Predictor


def check_distinct_points(cloud: PointCloud, predictor: Predictor) -> None:
    """One-line error when `cloud` has fewer distinct points than the model's widest graph."""
    need = int(getattr(predictor, "min_points", 1))
    probe = cloud.points[:max(64 * need, 1 << 16)]  # usually decides without the whole cloud
    distinct = len(np.unique(probe, axis=0))
    if distinct < need and len(probe) < len(cloud):
        distinct = len(np.unique(cloud.points, axis=0))
    if distinct < need:
        where = cloud.source or "the cloud"
        raise InputError(f"{where}: {distinct} distinct point{'s' if distinct != 1 else ''}; "
                         f"this model's kNN graphs gather {need} neighbours (k × dilation) and "
                         f"need at least {need} distinct points")


def segment_cloud(cloud: PointCloud, predictor: Predictor, settings: SampleSettings,
                  batch: int = 8, seed: int = 0) -> np.ndarray:
    """Mean logits `(N, n_classes)` for every point of `cloud`."""
    check_distinct_points(cloud, predictor)
    if predictor.in_channels != 9:
        raise InputError(f"this model takes {predictor.in_channels} channels; room "
                         "segmentation needs a 9-channel (xyz, rgb, location) model")
    return predict_room(cloud, predictor, predictor.n_classes, block=settings.block,
                        stride=settings.stride, n_points=settings.n_points, batch=batch,
                        position_norm=settings.position_norm, fill_color=DEFAULT_FILL_COLOR,
                        seed=seed)


def predict_room(cloud: PointCloud, predict: Callable[[np.ndarray], np.ndarray], n_classes: int,
                 block: float = 1.0, stride: float = 0.5,
                 n_points: int = DEFAULT_POINTS["segmentation"], min_points: int = 100,
                 batch: int = 8, position_norm: str = "normalize_scale",
                 fill_color: float = DEFAULT_FILL_COLOR, cover_all: bool = False,
                 seed: int = 0) -> np.ndarray:
    """Per-point mean logits (N, C) of a whole cloud: plan, iterate, vote, fill.
    `predict` maps features (B, 9, n_points) to logits (B, C, n_points)."""
    plan = plan_blocks(cloud.points, block, stride, n_points, min_points)
    votes = VoteAccumulator(len(cloud), n_classes)
    for feats, index in iter_blocks(cloud, plan, batch, position_norm, fill_color, cover_all,
                                    seed):
        votes.add(predict(feats), index)
    return votes.result(cloud.points)


def segment_object(cloud: PointCloud, predictor: Predictor, settings: SampleSettings,
                   batch: int = 8, seed: int = 0) -> np.ndarray:
    """Mean logits `(N, n_classes)` for every point of one object (part segmentation).

    The object is centred and scaled to a unit bounding-box diagonal (the frame of the
    synthetic parts; PartNet's h5 shapes are already normalised), then `cover_logits`.
    """
    if predictor.in_channels != 3:
        raise InputError(f"part segmentation models take xyz (3 channels); this one takes "
                         f"{predictor.in_channels}")
    check_distinct_points(cloud, predictor)
    pts = cloud.points.astype(np.float64)
    lo, hi = pts.min(0), pts.max(0)
    pts = (pts - (lo + hi) / 2) / max(float(np.linalg.norm(hi - lo)), 1e-12)
    return cover_logits(pts, predictor, settings.n_points, batch, seed)


def cover_logits(pts: np.ndarray, predictor: Predictor, n_points: int, batch: int = 8,
                 seed: int = 0) -> np.ndarray:
    """Mean logits `(N, n_classes)` of an `(N, 3)` object: its points shuffled and cut into
    samples of `n_points` — the last padded with random other points — so every point is
    predicted at least once; logits of repeated points are averaged."""
    rng = np.random.default_rng(seed)
    n, m = len(pts), n_points
    order = rng.permutation(n)
    pad = (-n) % m
    order = np.concatenate([order, rng.choice(n, pad, replace=n < pad)])
    samples = order.reshape(-1, m)
    sums = np.zeros((n, predictor.n_classes), np.float64)
    counts = np.zeros(n, np.int64)
    for s in range(0, len(samples), batch):
        idx = samples[s:s + batch]
        logits = predictor(pts[idx].transpose(0, 2, 1).astype(np.float32))
        np.add.at(sums, idx.reshape(-1), logits.transpose(0, 2, 1).reshape(-1, logits.shape[1]))
        np.add.at(counts, idx.reshape(-1), 1)
    return (sums / counts[:, None]).astype(np.float32)


def shape_features(cloud: PointCloud, settings: SampleSettings, rng: np.random.Generator,
                   in_channels: int) -> np.ndarray:
    """One `(C, n_points)` sample of a shape, normalised like the training shapes."""
    n = len(cloud)
    pick = rng.choice(n, settings.n_points, replace=n < settings.n_points)
    cols = [normalize_unit_sphere(cloud.points[pick])]
    if in_channels == 6:
        if cloud.normals is None:
            raise InputError("this model needs normals; the input has none (give a mesh, or a "
                             "cloud with nx ny nz)")
        cols.append(cloud.normals[pick])
    elif in_channels != 3:
        raise InputError(f"this model takes {in_channels} channels; shape classification "
                         "uses 3 (xyz) or 6 (xyz + normals)")
    return np.concatenate(cols, 1).T.astype(np.float32)


def vote_logits(cloud: PointCloud, predictor: Predictor, settings: SampleSettings,
                votes: int = 3, seed: int = 0) -> np.ndarray:
    """`(votes, n_classes)` logits of `votes` random point subsets of one object."""
    check_distinct_points(cloud, predictor)
    rng = np.random.default_rng(seed)
    feats = np.stack([shape_features(cloud, settings, rng, predictor.in_channels)
                      for _ in range(votes)])
    return predictor(feats)


def mean_probabilities(logits: np.ndarray) -> np.ndarray:
    """Softmax of each vote's logits, averaged over the votes."""
    z = logits - logits.max(1, keepdims=True)
    p = np.exp(z)
    return (p / p.sum(1, keepdims=True)).mean(0)


def classify_cloud(cloud: PointCloud, predictor: Predictor, settings: SampleSettings,
                   votes: int = 3, seed: int = 0) -> np.ndarray:
    """Class probabilities `(n_classes,)`, averaged over `votes` random point subsets."""
    return mean_probabilities(vote_logits(cloud, predictor, settings, votes, seed))
