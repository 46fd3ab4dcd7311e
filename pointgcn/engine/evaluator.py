"""Evaluation on the test split with each data set's protocol.

S3DIS: full resolution — every point of every test-area room, predicted by block voting —
and, labelled as such, the per-block figure the DeepGCN papers report (the 4096-point test
blocks). ModelNet40: OA and mAcc over test shapes. PartNet: part and shape mIoU (official
rule). 6-fold S3DIS sums the six areas' confusion matrices before dividing.
"""
from __future__ import annotations

import numpy as np
from tqdm import tqdm

from ..data.build import SampleSettings, build_datasets, resolve_data
from ..data.classes import S3DIS_CLASSES
from ..data.s3dis import find_s3dis, iter_rooms, room_cloud
from ..errors import InputError
from .inference import cover_logits, segment_cloud
from .metrics import ConfusionMatrix, PartNetIoU
from .predictor import Predictor
from .task_metrics import predict_labels


def _batches(dataset, batch: int):
    for s in range(0, len(dataset), batch):
        items = [dataset[i] for i in range(s, min(len(dataset), s + batch))]
        yield (np.stack([np.asarray(f, np.float32) for f, _ in items]),
               np.stack([np.asarray(y) for _, y in items]))


def _progress(items, enabled, total, desc):
    if not enabled:
        return items
    return tqdm(items, total=total, desc=desc, leave=False)


def evaluate(cfg: dict, predictor: Predictor, *, batch: int = 8, full_resolution: bool = True,
             progress: bool = True) -> dict:
    """Metrics on the test split; the result says which protocol each number follows."""
    data = build_datasets(cfg, ("test",), progress=progress)
    task = data.task
    if predictor.n_classes != len(data.class_names) or predictor.task != task:
        raise InputError(f"the model predicts {predictor.n_classes} classes for "
                         f"{predictor.task}; the data set has {len(data.class_names)} for {task}")
    if batch < 1:
        raise InputError(f"batch must be ≥ 1, got {batch}")
    # Whole rooms are read from our S3DIS layouts (PyG's S3DIS blocks keep no room).
    full_resolution = full_resolution and data.info.get("layout") == "s3dis"
    if task == "segmentation" and full_resolution:
        find_s3dis(resolve_data(cfg["data"])["root"], whole_rooms=True)  # fail before the work
    out: dict = {"task": task, "dataset": cfg["data"]["dataset"], "model": predictor.name}
    test = data.test
    n_batches = -(-len(test) // batch)
    if task == "part_segmentation":
        out["partnet"] = evaluate_parts(test, predictor, data.class_names, batch, progress)
        return out
    cm = ConfusionMatrix(len(data.class_names))
    desc = "blocks" if task == "segmentation" else "shapes"
    for feats, labels in _progress(_batches(test, batch), progress, n_batches, desc):
        cm.update(predict_labels(task, predictor(feats)), labels)
    key = "per_block" if task == "segmentation" else "shapes"
    out[key] = cm.summary(data.class_names)
    if task == "segmentation":
        out["per_block"]["protocol"] = ("per-block accuracy on sampled test blocks (the DeepGCN "
                                        "papers' figure), not every point of every room")
        if full_resolution:
            out["full_resolution"] = evaluate_rooms(cfg, predictor, batch=batch,
                                                    progress=progress)
    return out


def evaluate_parts(test, predictor: Predictor, class_names, batch: int = 8,
                   progress: bool = True) -> dict:
    """PartNet's rule on every stored point of every test shape (10 000 in PartNet's h5), each
    covered by samples of the training point count (`cover_logits`), not a random subset."""
    acc = PartNetIoU(len(class_names))
    m = test.n_points or test.points.shape[1]
    for i in _progress(range(len(test)), progress, len(test), "shapes"):
        logits = cover_logits(test.points[i], predictor, m, batch, seed=i)
        acc.update(predict_labels("part_segmentation", logits.T[None]), test.labels[i][None])
    out = acc.summary(class_names)
    out["protocol"] = (f"every point of the {len(test)} test shapes, covered by samples of "
                       f"{m} points, votes averaged")
    return out


def evaluate_rooms(cfg: dict, predictor: Predictor, *, batch: int = 8,
                   progress: bool = True) -> dict:
    """Every point of every test-area room, labels from block voting."""
    d = resolve_data(cfg["data"])
    settings = SampleSettings.from_config(cfg)
    cm = ConfusionMatrix(predictor.n_classes)
    rooms = 0
    for name, rows in iter_rooms(d["root"], [d["test_area"]], progress=progress):
        cloud = room_cloud(name, rows)
        logits = segment_cloud(cloud, predictor, settings, batch=batch)
        cm.update(logits.argmax(1), cloud.labels)
        rooms += 1
    return {**cm.summary(S3DIS_CLASSES), "rooms": rooms,
            "protocol": f"every point of the {rooms} rooms of Area_{d['test_area']}, "
                        "labels by voting over overlapping blocks"}


def six_fold(results: list[dict]) -> dict:
    """Combine six single-area evaluations: confusion matrices summed, then divided."""
    out = {}
    for key in ("full_resolution", "per_block"):
        mats = [r[key]["confusion"] for r in results if key in r]
        if len(mats) == len(results):
            cm = ConfusionMatrix(len(mats[0]))
            cm.matrix = np.sum(np.array(mats, dtype=np.int64), axis=0)
            out[key] = cm.summary(S3DIS_CLASSES)
    out["folds"] = len(results)
    return out

