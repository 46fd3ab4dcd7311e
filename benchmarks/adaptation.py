"""Few-label adaptation on rooms the model has not seen the like of (docs/adaptation.md).

    PYTHONPATH=. python benchmarks/adaptation.py [--rooms 3] [--fraction 0.01] [--weights W]

Writes `--rooms` synthetic rooms in the *shifted* style (another scanner and building:
3× noise, half the points, warm colours, another room mix; data/synthetic/rooms.py), then for
each room labels a random `--fraction` of its points, adapts the model on them
(pointgcn.engine.adapt, the library behind `pointgcn adapt`) and scores, against the
unadapted model, (a) the rest of that room's points and (b) every other shifted room. Prints a
markdown table: mIoU and OA per case and their means. Accuracy, not speed: one run suffices.
"""
from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np


def rooms(folder: Path, n: int, seed: int):
    from pointgcn.data.s3dis_raw import list_raw_rooms, read_raw_room
    from pointgcn.data.synthetic import write_rooms
    from pointgcn.io import PointCloud

    root = write_rooms(folder, n_rooms=n, seed=seed, style="shifted")
    for area, path in list_raw_rooms(root):
        rows = read_raw_room(path, area=area).as_rows(shift=True)
        yield f"Area_{area}/{path.name}", PointCloud(rows[:, :3].astype(np.float64),
                                    (rows[:, 3:6] / 255).astype(np.float32),
                                    labels=rows[:, 6].astype(np.int64))


def scores(model, cloud, settings, mask) -> dict:
    from pointgcn.engine.inference import segment_cloud
    from pointgcn.engine.metrics import ConfusionMatrix
    from pointgcn.engine.predictor import TorchPredictor

    pred = segment_cloud(cloud, TorchPredictor(model), settings).argmax(1)
    cm = ConfusionMatrix(13).update(pred[mask], cloud.labels[mask])
    return {"miou": cm.miou(), "oa": cm.oa()}


def main() -> None:
    from pointgcn.engine.adapt import adapt
    from pointgcn.engine.inference import Settings
    from pointgcn.export.sources import open_checkpoint, weights_file

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rooms", type=int, default=3)
    ap.add_argument("--fraction", type=float, default=0.01)
    ap.add_argument("--weights", default="synth-rooms")
    ap.add_argument("--seed", type=int, default=100)
    args = ap.parse_args()
    model, cfg, meta = open_checkpoint(weights_file(args.weights))
    settings = Settings.from_config(cfg)
    names = list(meta["class_names"])
    with tempfile.TemporaryDirectory() as tmp:
        data = list(rooms(Path(tmp), args.rooms, args.seed))
    print(f"{args.weights} on {len(data)} shifted synthetic rooms, {args.fraction:.0%} of one "
          "room's points labelled (random points)\n")
    print("| adapted on | labelled | scored on | points | mIoU before | mIoU after | OA before "
          "| OA after | adapt s |")
    print("|---|---|---|---|---|---|---|---|---|")
    rows = []
    for i, (name, cloud) in enumerate(data):
        rng = np.random.default_rng(args.seed)
        labelled = rng.random(len(cloud)) < args.fraction
        labels = np.where(labelled, cloud.labels, -1)
        t = time.perf_counter()
        result = adapt(model, cloud, labels, names, settings, "segmentation",
                       same_classes=True, seed=args.seed)
        took = time.perf_counter() - t
        for j, (other, target) in enumerate(data):
            mask = ~labelled if i == j else np.ones(len(target), bool)
            before = scores(model, target, settings, mask)
            after = scores(result.model, target, settings, mask)
            where = "rest of the same room" if i == j else other
            rows.append((i == j, before, after))
            print(f"| {name} | {int(labelled.sum())} | {where} | {int(mask.sum())} | "
                  f"{before['miou']:.3f} | {after['miou']:.3f} | {before['oa']:.3f} | "
                  f"{after['oa']:.3f} | {took:.0f} |", flush=True)
    for same, label in ((True, "same room (rest)"), (False, "other rooms")):
        sel = [r for r in rows if r[0] == same]
        if sel:
            before, after = (np.mean([r[i]["miou"] for r in sel]) for i in (1, 2))
            print(f"\nmean over {label}: mIoU {before:.3f} → {after:.3f} ({len(sel)} cases)")


if __name__ == "__main__":
    main()
