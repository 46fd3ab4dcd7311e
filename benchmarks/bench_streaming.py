"""`segment --stream` on procedurally tiled synthetic rooms: points/s and peak RSS by size, with
the in-memory path on the smallest size as the peer, in one run.

    PYTHONPATH=. python benchmarks/bench_streaming.py --model linear [--sizes 1e6 1e7 3e7]
    PYTHONPATH=. python benchmarks/bench_streaming.py --model shipped --sizes 2e5 1e6 \
        [--weights W] [--runtimes torch onnx]

`--model shipped` runs the CLI (`pointgcn segment --stream`, and without for the peer) with a
real network (default the shipped synth-rooms), once per runtime: `torch` (the checkpoint,
`--weights`) and `onnx` (the same model exported to ONNX in the run's temporary folder with
`pointgcn export --no-parity`, then `--onnx`), runs of one size interleaved. It also prints
the block count of the whole cloud's plan and the network points per input point
(blocks × points per block / points: the network's work per input point).

`--model linear` runs the same library calls
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
at the smallest size is compared with the streamed one: points, `pred`, `confidence` and
`entropy` (a real model's in-memory run writes class colours with `--colors class`). The machine's 1-minute load average is printed before each
run: on a shared CPU the times are an upper bound, and ratios of runs side by side are the
figures to compare.
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
    from pointgcn.engine.confidence import prediction_confidence
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
    pred, confidence, entropy = prediction_confidence(logits)  # the stream's fields
    del logits
    pred = pred.astype(np.int32)
    cloud.fields.update(pred=pred, confidence=confidence, entropy=entropy)
    cloud.colors = grey(pred)
    write_ply(out, cloud)


def network_share(src: Path, weights: str, runtime_model: str | None = None) -> dict:
    """Blocks of the whole cloud's plan (what in-memory segment runs; a stream adds its tiles'
    halo blocks) and network points per input point, for the model's block settings."""
    from pointgcn.data.build import SampleSettings
    from pointgcn.data.rooms import plan_blocks
    from pointgcn.export.serve import open_model
    from pointgcn.io import read_points

    s = SampleSettings.from_config(open_model(weights).run_config)
    points = read_points(src).points
    blocks = len(plan_blocks(points, s.block, s.stride, s.n_points, 100))
    return {"blocks": blocks, "network_points_per_point": round(blocks * s.n_points
                                                                / len(points), 3)}


def same_labels(a: Path, b: Path) -> bool:
    """Whether two segment outputs hold the same points, pred, confidence and entropy."""
    from pointgcn.io import read_points

    x, y = read_points(a), read_points(b)
    return np.array_equal(x.points, y.points) and all(
        np.array_equal(x.fields[f], y.fields[f]) for f in ("pred", "confidence", "entropy"))


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
    p.add_argument("--runtimes", nargs="+", choices=("torch", "onnx"), default=["torch", "onnx"],
                   help="with --model shipped: the runtimes to run side by side")
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
    runtimes = a.runtimes if a.model == "shipped" else ["linear"]
    rows = []
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sources = {"torch": ["--weights", a.weights]}
        if "onnx" in runtimes:
            onnx = tmp / "model.onnx"
            subprocess.run([sys.executable, "-m", "apps.cli", "export", a.weights, "--out",
                            str(onnx), "--no-parity"], cwd=ROOT, check=True,
                           stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(ROOT)})
            sources["onnx"] = ["--onnx", str(onnx)]
        for size in a.sizes:
            n = int(size)
            src = tmp / f"scene_{n}.ply"
            write_scene(src, n, rooms)
            row = {"points": n, "file_mb": round(src.stat().st_size / 2**20, 1)}
            if a.model == "shipped" and n <= 5_000_000:
                row.update(network_share(src, a.weights))
                print(json.dumps({"points": n, **{k: row[k] for k in ("blocks",
                                  "network_points_per_point")}}), flush=True)
            peer = size == min(a.sizes) and not a.no_peer
            for runtime in runtimes:
                for name in ["stream"] + ["in-memory"] * peer:
                    out = tmp / f"out_{runtime}_{name}_{n}.ply"
                    if a.model == "linear":
                        argv = [__file__, "--child", name, str(src), str(out),
                                "--tile-points", str(a.tile_points)]
                    else:
                        extra = (["--stream", "--tile-points", str(a.tile_points)]
                                 if name == "stream" else ["--colors", "class"])
                        argv = ["-m", "apps.cli", "segment", str(src), "--out", str(out),
                                *sources[runtime], "--no-harmonise", "--threads",
                                str(a.threads), *extra]
                    load = round(os.getloadavg()[0], 2)
                    r = run_measured(argv, a.timeout)
                    r["load_before"] = load
                    if "seconds" in r:
                        r["points_per_s"] = round(n / r["seconds"])
                        r["points_per_cpu_s"] = round(n / max(r["cpu_seconds"], 1e-9))
                    row[f"{runtime} {name}"] = r
                    print(json.dumps({"points": n, "runtime": runtime, "path": name, **r}),
                          flush=True)
                mem = tmp / f"out_{runtime}_in-memory_{n}.ply"
                st = tmp / f"out_{runtime}_stream_{n}.ply"
                if peer and mem.exists() and st.exists():
                    same = same_labels(st, mem)
                    row[f"{runtime} stream_equals_in_memory"] = same
                    print(f"{runtime}: stream output equals in-memory: {same}", flush=True)
            for f in tmp.glob("*.ply"):
                f.unlink()
            rows.append(row)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print(f"\nmodel: {a.model}")
    print(f"{'points':>10} {'runtime':>7} {'path':>10} {'seconds':>8} {'cpu s':>7} "
          f"{'points/s':>9} {'pts/cpu s':>9} {'peak RSS MB':>11} {'load':>5}")
    for row in rows:
        for runtime in runtimes:
            for name in ("stream", "in-memory"):
                r = row.get(f"{runtime} {name}")
                if r:
                    print(f"{row['points']:>10} {runtime:>7} {name:>10} "
                          f"{r.get('seconds', '-'):>8} {r.get('cpu_seconds', '-'):>7} "
                          f"{r.get('points_per_s', '-'):>9} {r.get('points_per_cpu_s', '-'):>9} "
                          f"{r.get('peak_rss_mb', r.get('error')):>11} {r['load_before']:>5}")
        if len(runtimes) == 2 and all("seconds" in row.get(f"{rt} stream", {}) for rt in runtimes):
            ratio = row["torch stream"]["seconds"] / row["onnx stream"]["seconds"]
            print(f"{row['points']:>10} stream wall time torch / onnx: {ratio:.2f}")
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
