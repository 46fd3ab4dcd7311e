"""Few-label adaptation on rooms the model has not seen the like of (docs/adaptation.md).

    PYTHONPATH=. python benchmarks/adaptation.py [--rooms 4] [--fraction 0.01] [--weights W]

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


def predictions(model, cloud, settings) -> np.ndarray:
    from pointgcn.engine.inference import segment_cloud
    from pointgcn.engine.predictor import TorchPredictor

    return segment_cloud(cloud, TorchPredictor(model), settings).argmax(1)


def miou(pred, labels, mask) -> float:
    from pointgcn.engine.metrics import ConfusionMatrix

    return ConfusionMatrix(13).update(pred[mask], labels[mask]).miou()


def main() -> None:
    from pointgcn.engine.adapt import adapt
    from pointgcn.data.build import SampleSettings
    from pointgcn.export.serve import open_model

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rooms", type=int, default=4)
    ap.add_argument("--fraction", type=float, default=0.01)
    ap.add_argument("--weights", default="synth-rooms")
    ap.add_argument("--seed", type=int, default=100)
    ap.add_argument("--anchor", type=float, nargs="+", default=[0.3, 0.0],
                    help="pulls towards the model's weights to compare (pointgcn adapt --anchor)")
    args = ap.parse_args()
    loaded = open_model(args.weights)
    model, cfg, meta = loaded.module, loaded.run_config, loaded.meta
    settings = SampleSettings.from_config(cfg)
    names = list(meta["class_names"])
    with tempfile.TemporaryDirectory() as tmp:
        data = list(rooms(Path(tmp), args.rooms, args.seed))
    before = [predictions(model, cloud, settings) for _, cloud in data]
    print(f"{args.weights} on {len(data)} shifted synthetic rooms (seed {args.seed}); each in "
          f"turn has {args.fraction:.0%} of its points labelled (random points) and adapts the "
          "model; mIoU on the rest of that room and on every other room\n")
    print("| adapted on | labelled | anchor | rest of the room: before → after | other rooms "
          "(mean): before → after | adapt s |")
    print("|---|---|---|---|---|---|")
    summary = {a: ([], [], [], []) for a in args.anchor}
    for i, (name, cloud) in enumerate(data):
        labelled = np.random.default_rng(args.seed).random(len(cloud)) < args.fraction
        labels = np.where(labelled, cloud.labels, -1)
        for anchor in args.anchor:
            t = time.perf_counter()
            result = adapt(model, cloud, labels, names, settings, "segmentation",
                           same_classes=True, anchor=anchor, seed=args.seed)
            took = time.perf_counter() - t
            scored = []
            for j, (_, target) in enumerate(data):
                mask = ~labelled if i == j else np.ones(len(target), bool)
                after = predictions(result.model, target, settings)
                scored.append((miou(before[j], target.labels, mask),
                               miou(after, target.labels, mask)))
            same, others = scored[i], [s for j, s in enumerate(scored) if j != i]
            other_b, other_a = np.mean([s[0] for s in others]), np.mean([s[1] for s in others])
            for k, v in enumerate((*same, other_b, other_a)):
                summary[anchor][k].append(v)
            print(f"| {name} | {int(labelled.sum())} | {anchor:g} | {same[0]:.3f} → {same[1]:.3f}"
                  f" | {other_b:.3f} → {other_a:.3f} | {took:.0f} |", flush=True)
    print()
    for anchor, (sb, sa, ob, oa) in summary.items():
        print(f"anchor {anchor:g}: rest of the labelled room mIoU {np.mean(sb):.3f} → "
              f"{np.mean(sa):.3f}; other rooms {np.mean(ob):.3f} → {np.mean(oa):.3f} "
              f"(means over {len(sb)} rooms)")


if __name__ == "__main__":
    main()
