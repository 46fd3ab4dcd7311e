"""`make demo`: the whole path on a fresh machine with the shipped weights.

Generates a held-out synthetic room and a few shapes (a seed never used in training), segments
the room and classifies the shapes with the shipped models through the same commands a user
runs, prints mIoU / OA against the synthetic ground truth, and writes the prediction PLY and a
PNG preview to demo_out/ — synthetic data: these numbers are not S3DIS/ModelNet40 results.
Then, where the real ModelNet10 files are at hand (../shared/data/modelnet10, or the folder
POINTGCN_MODELNET10 names), the shipped `modelnet10` classifier labels one shape per class of
its validation split (shapes it was not trained on; the list ships with it).
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

OUT = Path("demo_out")
HELD_OUT_SEED = 20261124  # training used seed 0
MODELNET10 = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "modelnet10"


def main() -> int:
    from apps.cli import main as cli
    from pointgcn.data.s3dis import iter_rooms, room_cloud
    from pointgcn.data.synthetic import write_rooms, write_shapes
    from pointgcn.io import write_ply

    t0 = time.time()
    OUT.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        print("1/4 generating a held-out synthetic room and shapes (seed "
              f"{HELD_OUT_SEED}) …", flush=True)
        root = write_rooms(tmp, n_rooms=2, seed=HELD_OUT_SEED)
        name, rows = next(iter_rooms(root))
        room = room_cloud(name, rows)
        write_ply(OUT / "room.ply", room)
        shapes = write_shapes(tmp, n_per_class=2, seed=HELD_OUT_SEED, test_fraction=0.5)
        print(f"    room {name}: {len(room)} points with ground-truth labels → {OUT / 'room.ply'}")

        print("2/4 segmenting the room with the shipped model `synth-rooms` …", flush=True)
        code = cli(["segment", str(OUT / "room.ply"), "--weights", "synth-rooms",
                    "--out", str(OUT / "room_pred.ply"), "--colors", "class",
                    "--png", str(OUT / "room_pred.png")])
        if code:
            return code

        print("3/4 classifying held-out shapes with the shipped model `synth-shapes` …",
              flush=True)
        files = sorted(shapes.glob("*/test/*.off"))
        right = 0
        for f, guess in zip(files, _classify(cli, files, "synth-shapes")):
            truth = f.parent.parent.name
            right += guess == truth
            print(f"    {f.name:18s} true {truth:10s} predicted {guess:10s} "
                  f"{'✓' if guess == truth else '✗'}")
        print(f"    shape accuracy {right}/{len(files)} = {right / max(1, len(files)):.2f} "
              "(synthetic held-out shapes)")
    _real_shapes(cli)
    print(f"done in {time.time() - t0:.0f} s; outputs in {OUT.resolve()}: room.ply (ground "
          "truth), room_pred.ply (pred, confidence and entropy fields + class colours), room_pred.png")
    return 0


def _real_shapes(cli) -> None:
    """Step 4: the real-data classifier on one validation shape per ModelNet10 class."""
    import os

    from pointgcn.models.weights import find_entry, weights_dir

    root = Path(os.environ.get("POINTGCN_MODELNET10", MODELNET10))
    entry = find_entry("modelnet10")
    listing = weights_dir() / "modelnet10.val.txt"
    if entry is None or not listing.is_file():
        print("4/4 skipped: no shipped modelnet10 classifier")
        return
    if not root.is_dir():
        print(f"4/4 skipped: the ModelNet10 files are not at {root} (set POINTGCN_MODELNET10)")
        return
    chosen = {}
    for shape_id in listing.read_text().split():
        cls = shape_id.rsplit("_", 1)[0]
        path = root / cls / "train" / f"{shape_id}.pcd"
        if cls not in chosen and path.is_file():
            chosen[cls] = path
    print(f"4/4 classifying {len(chosen)} real ModelNet10 shapes the shipped model `modelnet10` "
          "held out for validation …", flush=True)
    files = list(chosen.values())
    right = 0
    for f, guess in zip(files, _classify(cli, files, "modelnet10")):
        truth = f.stem.rsplit("_", 1)[0]
        right += guess == truth
        print(f"    {f.name:22s} true {truth:12s} predicted {guess:12s} "
              f"{'✓' if guess == truth else '✗'}")
    print(f"    {right}/{len(files)} right (real ModelNet10 validation shapes, raw files)")


def _classify(cli, paths: list[Path], weights: str) -> list[str]:
    """The top class of each file, from one `pointgcn classify` run (one model load)."""
    import contextlib
    import io
    import json

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = cli(["classify", *map(str, paths), "--weights", weights, "--json", "--top", "1"])
    if code:
        raise SystemExit(code)
    return [row["ranking"][0]["class"] for row in json.loads(buf.getvalue())]


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
