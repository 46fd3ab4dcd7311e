"""`segment --stream` on procedurally tiled synthetic rooms: points/s and peak RSS by size, with
the in-memory path on the smallest size as the peer, in one run.

    PYTHONPATH=. python benchmarks/bench_streaming.py --model linear [--sizes 1e6 1e7 3e7]
    PYTHONPATH=. python benchmarks/bench_streaming.py --model shipped --sizes 2e5 [--weights W]

`--model shipped` runs the CLI (`pointgcn segment --stream`, and without for the peer) with a
real network (default the shipped synth-rooms). `--model linear` runs the same library calls
(engine.streaming.stream_segment; read_points + inference.predict_room + write_ply for the
peer) with a stand-in model — fixed random per-point linear logits of the 9 block channels —
so the sizes that matter for memory (10M, 30M points) finish on a shared 2-core machine: it
measures the pipeline (reading, tiling, block planning and sampling, voting, writing) and its
memory, not the network, whose cost per block is the same in both paths.

Rooms come from the project's generator (pointgcn/data/synthetic/rooms.py: `build_room`,
`scan`); a handful of distinct rooms are laid out on a grid, side by side, until the cloud has
the asked number of points, and written as a binary PLY (x y z float, rgb uchar, label int),
room by room. Each segment run is its own process (`python -m apps.cli segment …`); its wall
time and peak RSS come from `os.wait4` (the child's own `ru_maxrss`). Both paths run with
`--no-harmonise` (streaming has no preflight), so they do the same work. The in-memory output
at the smallest size is compared with the streamed one byte for byte. The machine's load
average is printed: on a shared CPU the times are an upper bound.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pointgcn.data.classes import S3DIS_CLASSES  # noqa: E402
from pointgcn.data.synthetic.rooms import ROOM_TYPES, build_room, scan  # noqa: E402
from pointgcn.io.cloud import PointCloud  # noqa: E402
from pointgcn.io.ply_stream import PlyRowWriter  # noqa: E402


def make_rooms(n_rooms: int, target: int, seed: int = 0):
    """[(xyz float32 from the room's corner, rgb uint8, label)] of distinct rooms."""
    rooms = []
    for k in range(n_rooms):
        rng = np.random.default_rng([seed, k])
        room = build_room(rng, ROOM_TYPES[k % len(ROOM_TYPES)], k % 2 == 0, k % 3 == 0, 0)
        parts = scan(room, target)
        xyz = np.concatenate([p for _, p, _ in parts])
        rgb = np.concatenate([c for _, _, c in parts])
        lab = np.concatenate([np.full(len(p), S3DIS_CLASSES.index(c)) for c, p, _ in parts])
        rooms.append((xyz - xyz.min(0), rgb, lab, room.size))
    return rooms


def write_scene(path: Path, n: int, rooms) -> int:
    """Rooms on a square grid (cell: the largest room + 0.3 m) until `n` points; returns n."""
    cell = max(max(r[3][0], r[3][1]) for r in rooms) + 0.3
    per_row = int(np.ceil(np.sqrt(n / np.mean([len(r[0]) for r in rooms]))))
    writer = PlyRowWriter(path, n)
    rgb01 = [r[1].astype(np.float64) / 255.0 for r in rooms]
    written, k = 0, 0
    while written < n:
        xyz, _, lab, _ = rooms[k % len(rooms)]
        take = min(len(xyz), n - written)
        shift = np.array([(k % per_row) * cell, (k // per_row) * cell, 0.0])
        writer.write(PointCloud((xyz[:take] + shift).astype(np.float32),
                                rgb01[k % len(rooms)][:take].astype(np.float32),
                                labels=lab[:take]))
        written += take
        k += 1
    writer.close()
    return n


class LinearModel:
    """The stand-in model of `--model linear` (see the module doc)."""
    in_channels, n_classes, task, min_points = 9, 13, "segmentation", 16

    def __init__(self):
        self.w = np.random.default_rng(0).normal(size=(13, 9)).astype(np.float32)

    def __call__(self, feats):
        return np.einsum("cf,bfn->bcn", self.w, feats)


def child(mode: str, src: str, out: str, tile_points: int) -> None:
    """One measured run of the library with the stand-in model."""
    from pointgcn.data.build import SampleSettings
    from pointgcn.engine.inference import predict_room
    from pointgcn.engine.streaming import stream_segment
    from pointgcn.io import read_points, write_ply
    from pointgcn.io.chunks import ChunkReader

    settings = SampleSettings(2048, 1.5, 1.0)  # the shipped synth-rooms model's blocks
    grey = lambda pred: np.repeat(pred[:, None] / 12.0, 3, axis=1)  # noqa: E731
    if mode == "stream":
        stream_segment(ChunkReader(src), out, LinearModel(), settings, {}, colorize=grey,
                       colors="class", tile_points=tile_points, progress=False)
        return
    cloud = read_points(src)
    logits = predict_room(cloud, LinearModel(), 13, settings.block, settings.stride,
                          settings.n_points)
    pred = logits.argmax(1).astype(np.int32)
    del logits
    cloud.fields["pred"], cloud.colors = pred, grey(pred)
    write_ply(out, cloud)


def run_measured(argv: list[str], timeout: float) -> dict:
    """Wall and CPU seconds and peak RSS (MB) of one child process (os.wait4)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t = time.perf_counter()
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([sys.executable, *argv], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.time() > deadline:
            proc.kill()
            os.wait4(proc.pid, 0)
            return {"error": f"timed out after {timeout:.0f} s"}
        time.sleep(0.2)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t
    log.seek(0)
    text = log.read().decode(errors="replace")
    if proc.returncode:
        return {"error": f"exit {proc.returncode}: {text.strip().splitlines()[-1:]}"}
    return {"seconds": round(wall, 1), "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=("linear", "shipped"), default="linear")
    p.add_argument("--sizes", type=float, nargs="+", default=[1e6, 1e7])
    p.add_argument("--child", nargs=3, metavar=("MODE", "SRC", "OUT"), help=argparse.SUPPRESS)
    p.add_argument("--weights", default="synth-rooms")
    p.add_argument("--rooms", type=int, default=6, help="distinct rooms to tile")
    p.add_argument("--room-points", type=int, default=60000)
    p.add_argument("--tile-points", type=int, default=500_000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--timeout", type=float, default=3600)
    p.add_argument("--no-peer", action="store_true", help="skip the in-memory run")
    p.add_argument("--json", type=Path, help="also write the results here")
    a = p.parse_args()
    if a.child:
        child(*a.child, a.tile_points)
        return 0
    rooms = make_rooms(a.rooms, a.room_points)
    common = ["--weights", a.weights, "--no-harmonise", "--threads", str(a.threads)]
    rows = []
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for size in a.sizes:
            n = int(size)
            src = tmp / f"scene_{n}.ply"
            write_scene(src, n, rooms)
            row = {"points": n, "file_mb": round(src.stat().st_size / 2**20, 1)}
            runs = ["stream"] + (["in-memory"] if size == min(a.sizes) and not a.no_peer else [])
            for name in runs:
                out = tmp / f"out_{name}_{n}.ply"
                if a.model == "linear":
                    argv = [__file__, "--child", name, str(src), str(out),
                            "--tile-points", str(a.tile_points)]
                else:
                    extra = ["--stream", "--tile-points", str(a.tile_points)] * (name == "stream")
                    argv = ["-m", "apps.cli", "segment", str(src), "--out", str(out), *common,
                            *extra]
                r = run_measured(argv, a.timeout)
                if "seconds" in r:
                    r["points_per_s"] = round(n / r["seconds"])
                row[name] = r
                print(json.dumps({"points": n, "path": name, **r}), flush=True)
            if "in-memory" in row and "seconds" in row["in-memory"]:
                same = (tmp / f"out_stream_{n}.ply").read_bytes() == \
                    (tmp / f"out_in-memory_{n}.ply").read_bytes()
                row["stream_output_identical"] = same
                print(f"stream output identical to in-memory: {same}")
            for f in tmp.glob("*.ply"):
                f.unlink()
            rows.append(row)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print(f"\nmodel: {a.model}")
    print(f"{'points':>10} {'path':>10} {'seconds':>8} {'cpu s':>7} {'points/s':>9} "
          f"{'peak RSS MB':>11}")
    for row in rows:
        for name in ("stream", "in-memory"):
            r = row.get(name)
            if r:
                print(f"{row['points']:>10} {name:>10} {r.get('seconds', '-'):>8} "
                      f"{r.get('cpu_seconds', '-'):>7} {r.get('points_per_s', '-'):>9} "
                      f"{r.get('peak_rss_mb', r.get('error')):>11}")
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
