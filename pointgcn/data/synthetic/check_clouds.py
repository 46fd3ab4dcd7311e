"""Held-out clouds of a model's kind, for checking an exported model: procedural samples.

Uniform noise is far from anything a model was trained on: a room model's logits there are
near-ties, so the last-bit kNN differences between runtimes flip ~4% of its labels (synth-rooms:
96.4% agreement on noise, 100% on room blocks). Parity should be judged on the inputs a model
will see, so unless the user gives clouds, `pointgcn export` checks on what the model's task
eats, drawn from the synthetic generators: blocks of a scanned room with the training block
size and position norm (segmentation, 9 channels), whole shapes on the unit sphere
(classification, 3 or 6 channels) or part shapes (part segmentation). Anything else: None (the
check falls back to noise).
"""
from __future__ import annotations

import numpy as np
import trimesh

from ...io.cloud import PointCloud
from ..build import SampleSettings
from ..rooms import iter_blocks, plan_blocks
from ..transforms import normalize_unit_sphere
from .parts import BUILDERS as PART_BUILDERS, make_part_shape
from .rooms import build_room, scan
from .shapes import BUILDERS as SHAPE_BUILDERS, make_shape

# Generator seeds far from those of the shipped data sets (0…) and of `make demo`.
SEED_BASE = 7_000_000


def synthetic_clouds(run_config: dict, batch: int, points: int, seed: int = 0
                     ) -> tuple[np.ndarray, str] | None:
    """`(B, C, 2·points)` float32 features and a description, or None (→ random noise)."""
    model = run_config.get("model", {})
    task, channels = model.get("task", "segmentation"), model.get("in_channels")
    rng = np.random.default_rng(SEED_BASE + seed)
    n = 2 * points  # parity runs at ≈ N/2, N and 2N points: subsets of these
    if task == "segmentation" and channels == 9:
        return _room_blocks(run_config, batch, n, rng), "synthetic room blocks"
    if task == "classification" and channels in (3, 6):
        return _shapes(batch, n, channels, rng), "synthetic shapes"
    if task == "part_segmentation" and channels == 3:
        category = run_config.get("data", {}).get("category")
        return _parts(category, batch, n, rng), "synthetic part shapes"
    return None


def _room_blocks(run_config: dict, batch: int, n: int, rng) -> np.ndarray:
    """The `batch` densest blocks of a synthetic office, scanned densely enough that they hold
    ≥ n points: no resampled duplicates, whose exact distance ties each runtime breaks its own
    way (a parity artefact of the sampling, not of the export)."""
    settings = SampleSettings.from_config(run_config)
    room = build_room(rng, "office", beams=True, columns=False)
    target = 60_000
    for _ in range(6):
        parts = scan(room, target=target)
        xyz = np.concatenate([p for _, p, _ in parts]).astype(np.float32)
        rgb = np.concatenate([c for _, _, c in parts]).astype(np.float32) / 255.0
        cloud = PointCloud(xyz - xyz.min(0), rgb)
        plan = plan_blocks(cloud.points, settings.block, settings.stride, n)
        densest = np.argsort(-plan.counts, kind="stable")[:batch]
        if len(densest) == batch and plan.counts[densest].min() >= n:
            break
        target *= 2
    feats = np.concatenate([f for f, _ in iter_blocks(cloud, plan.select(densest), batch=batch,
                                                       position_norm=settings.position_norm)])
    if len(feats) < batch:  # a tiny room: repeat its blocks
        feats = np.concatenate([feats] * -(-batch // len(feats)))[:batch]
    return feats.astype(np.float32)


def _shapes(batch: int, n: int, channels: int, rng) -> np.ndarray:
    names = sorted(SHAPE_BUILDERS)
    out = []
    for i in range(batch):
        mesh = make_shape(names[int(rng.integers(len(names)))], rng)
        pts, face = trimesh.sample.sample_surface(mesh, n, seed=int(rng.integers(1 << 31)))
        cols = [normalize_unit_sphere(np.asarray(pts))]
        if channels == 6:
            cols.append(np.asarray(mesh.face_normals)[face])
        out.append(np.concatenate(cols, 1).T)
    return np.stack(out).astype(np.float32)


def _parts(category: str | None, batch: int, n: int, rng) -> np.ndarray:
    name = category if category in PART_BUILDERS else "Chair"
    return np.stack([make_part_shape(name, rng, n)[0].T for _ in range(batch)]
                    ).astype(np.float32)
