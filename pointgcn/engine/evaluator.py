"""Evaluation on the test split with each data set's protocol.

S3DIS: full resolution — every point of every test-area room, predicted by block voting —
and, labelled as such, the per-block figure the DeepGCN papers report (the 4096-point test
blocks). ModelNet40: OA and mAcc over test shapes. PartNet: part and shape mIoU (official
rule). 6-fold S3DIS sums the six areas' confusion matrices before dividing.

Every confusion-matrix protocol also reports how far to trust it: bootstrap 95% intervals of
OA, mAcc and mIoU over its items (shapes, blocks, rooms; bootstrap.py) and the expected
calibration error of the predictor's probabilities before and after its temperature
(calibration.py). `items`, when given, receives each protocol's per-item confusion matrices
(for a paired comparison of two models on the same items).
"""
from __future__ import annotations

import numpy as np
from tqdm import tqdm

from ..data.build import SampleSettings, build_datasets, resolve_data
from ..data.classes import S3DIS_CLASSES
from ..data.s3dis import find_s3dis, iter_rooms, room_cloud
from ..errors import InputError
from .bootstrap import RESAMPLES, bootstrap_ci
from .calibration import BeforeAfter, pool_records
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


def item_matrices(pred: np.ndarray, labels: np.ndarray, n_classes: int) -> list[np.ndarray]:
    """One confusion matrix per item (a shape's single label, a block's points)."""
    return [ConfusionMatrix(n_classes).update(p, y).matrix
            for p, y in zip(np.asarray(pred), np.asarray(labels))]


def trust(summary: dict, matrices: list, calibration: BeforeAfter, resamples: int, seed: int,
          unit: str) -> dict:
    """`summary` with its bootstrap intervals over `unit`s and its calibration record."""
    if resamples and matrices:
        summary["ci"] = {**bootstrap_ci(np.stack(matrices), resamples, seed), "over": unit}
    summary["calibration"] = calibration.record()
    return summary


def evaluate(cfg: dict, predictor: Predictor, *, batch: int = 8, full_resolution: bool = True,
             progress: bool = True, resamples: int = RESAMPLES, seed: int = 0,
             items: dict | None = None) -> dict:
    """Metrics on the test split; the result says which protocol each number follows.
    `resamples` bootstrap draws (0: no intervals) from `seed`."""
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
        out["partnet"] = evaluate_parts(test, predictor, data.class_names, batch, progress,
                                        resamples, seed, items)
        return out
    n = len(data.class_names)
    cm, per_item = ConfusionMatrix(n), []
    calibration = BeforeAfter(getattr(predictor, "temperature", 1.0))
    desc = "blocks" if task == "segmentation" else "shapes"
    unit = ("blocks (blocks of one room are correlated, so this interval is too narrow; the "
            "full-resolution interval over rooms is the one to trust)"
            if task == "segmentation" else "shapes")
    for feats, labels in _progress(_batches(test, batch), progress, n_batches, desc):
        logits = predictor(feats)
        pred = predict_labels(task, logits)
        cm.update(pred, labels)
        per_item += item_matrices(pred, labels, n)
        calibration.update(logits, labels)
    key = "per_block" if task == "segmentation" else "shapes"
    out[key] = trust(cm.summary(data.class_names), per_item, calibration, resamples, seed, unit)
    if items is not None:
        items[key] = np.stack(per_item)
    if task == "segmentation":
        out["per_block"]["protocol"] = ("per-block accuracy on sampled test blocks (the DeepGCN "
                                        "papers' figure), not every point of every room")
        if full_resolution:
            out["full_resolution"] = evaluate_rooms(cfg, predictor, batch=batch,
                                                    progress=progress, resamples=resamples,
                                                    seed=seed, items=items)
    return out


def evaluate_parts(test, predictor: Predictor, class_names, batch: int = 8,
                   progress: bool = True, resamples: int = RESAMPLES, seed: int = 0,
                   items: dict | None = None) -> dict:
    """PartNet's rule on every stored point of every test shape (10 000 in PartNet's h5), each
    covered by samples of the training point count (`cover_logits`), not a random subset;
    intervals over shapes, calibration on the points PartNet scores (label ≥ 1) over the
    classes it predicts (≥ 1)."""
    n = len(class_names)
    acc = PartNetIoU(n)
    parts = {"inter": [], "union": [], "shape_iou": []}
    calibration = BeforeAfter(getattr(predictor, "temperature", 1.0))
    m = test.n_points or test.points.shape[1]
    for i in _progress(range(len(test)), progress, len(test), "shapes"):
        logits = cover_logits(test.points[i], predictor, m, batch, seed=i)
        pred, labels = predict_labels("part_segmentation", logits.T[None]), test.labels[i][None]
        acc.update(pred, labels)
        shape = PartNetIoU(n).update(pred, labels)
        parts["inter"].append(shape.inter)
        parts["union"].append(shape.union)
        parts["shape_iou"].append(shape.shape_ious[0] if shape.shape_ious else np.nan)
        # PartNet never predicts "other" (0): confidence is over the parts 1… only
        calibration.update(logits[:, 1:], np.where(labels[0] > 0, labels[0] - 1, -1))
    out = acc.summary(class_names)
    out["protocol"] = (f"every point of the {len(test)} test shapes, covered by samples of "
                       f"{m} points, votes averaged")
    parts = {k: np.array(v, np.float64) for k, v in parts.items()}
    if items is not None and len(test):
        items["partnet"] = parts
    if resamples and len(test):
        out["ci"] = {**bootstrap_ci(parts, resamples, seed), "over": "shapes"}
    out["calibration"] = calibration.record()
    return out


def evaluate_rooms(cfg: dict, predictor: Predictor, *, batch: int = 8,
                   progress: bool = True, resamples: int = RESAMPLES, seed: int = 0,
                   items: dict | None = None) -> dict:
    """Every point of every test-area room, labels from block voting (the mean of the blocks'
    logits per point, whose softmax the calibration record scores)."""
    d = resolve_data(cfg["data"])
    settings = SampleSettings.from_config(cfg)
    n = predictor.n_classes
    cm, per_room = ConfusionMatrix(n), []
    calibration = BeforeAfter(getattr(predictor, "temperature", 1.0))
    for name, rows in iter_rooms(d["root"], [d["test_area"]], progress=progress):
        cloud = room_cloud(name, rows)
        logits = segment_cloud(cloud, predictor, settings, batch=batch)
        room = ConfusionMatrix(n).update(logits.argmax(1), cloud.labels)
        cm += room
        per_room.append(room.matrix)
        calibration.update(logits, cloud.labels)
    rooms = len(per_room)
    if items is not None and per_room:
        items["full_resolution"] = np.stack(per_room)
    summary = {**cm.summary(S3DIS_CLASSES), "rooms": rooms,
               "protocol": f"every point of the {rooms} rooms of Area_{d['test_area']}, "
                           "labels by voting over overlapping blocks"}
    return trust(summary, per_room, calibration, resamples, seed, "rooms")


def six_fold(results: list[dict], items: list[dict] | None = None,
             resamples: int = RESAMPLES, seed: int = 0) -> dict:
    """Combine six single-area evaluations: confusion matrices summed, then divided; with
    each fold's per-item matrices (`items`), intervals over the rooms of all six areas; the
    calibration bins pooled over every fold's points."""
    out = {}
    for key in ("full_resolution", "per_block"):
        mats = [r[key]["confusion"] for r in results if key in r]
        if len(mats) == len(results):
            cm = ConfusionMatrix(len(mats[0]))
            cm.matrix = np.sum(np.array(mats, dtype=np.int64), axis=0)
            out[key] = cm.summary(S3DIS_CLASSES)
            if items and resamples and all(key in fold for fold in items):
                every = np.concatenate([fold[key] for fold in items])
                unit = "rooms" if key == "full_resolution" else "blocks"
                out[key]["ci"] = {**bootstrap_ci(every, resamples, seed),
                                  "over": f"{unit} of the six areas"}
            if all("calibration" in r[key] for r in results):
                out[key]["calibration"] = pool_records([r[key]["calibration"] for r in results])
    out["folds"] = len(results)
    return out
