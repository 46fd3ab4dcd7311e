"""`segment --stream`'s output formats side by side: wall/CPU seconds and peak RSS of the same
streamed run writing .ply, .las, .laz, .npy or .txt, on one synthetic LAS scene per size.

    PYTHONPATH=. python benchmarks/bench_stream_output.py [--sizes 1e6 3e6] [--formats .ply .laz]

The scene is bench_streaming.py's tiled synthetic rooms, written as LAS 1.4 point format 7
(x y z, RGB, the room labels as ASPRS classification, intensity and GPS time, and a float32
extra-bytes dimension) — so a LAS output keeps every input dimension byte for byte and stores
`pred` in classification, as in-memory segment does. The model is bench_streaming.py's stand-in
(fixed random linear logits of the 9 block channels): reading, tiling, voting and writing are
measured, not the network. Each run is its own process (`os.wait4`: the child's own CPU time and
`ru_maxrss`). The scene is written by a child process too: Linux carries the peak RSS of the
process that spawned a child into the child's `ru_maxrss` (exec records the old address space's
peak), so a parent holding a 10 M-point scene would show up as every run's peak. Memory should
not grow with the cloud for any format (the writers hold a chunk).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench_streaming import LinearModel, make_rooms, run_measured, write_scene  # noqa: E402

FORMATS = (".ply", ".las", ".laz", ".npy", ".txt")


def write_las_scene(path: Path, n: int, rooms) -> None:
    """bench_streaming's scene as LAS 1.4 format 7 with intensity, GPS time and extra bytes."""
    import laspy

    from pointgcn.io import read_points

    ply = path.with_suffix(".ply")
    write_scene(ply, n, rooms)
    cloud = read_points(ply)
    ply.unlink()
    rng = np.random.default_rng(0)
    las = laspy.LasData(laspy.LasHeader(point_format=7, version="1.4"))
    las.add_extra_dim(laspy.ExtraBytesParams(name="reflectance", type=np.float32))
    las.header.scales, las.header.offsets = [0.001] * 3, [0.0] * 3
    las.x, las.y, las.z = cloud.absolute_points().T
    las.red, las.green, las.blue = (cloud.colors * 65535).round().astype(np.uint16).T
    las.classification = cloud.labels.astype(np.uint8)
    las.intensity = rng.integers(0, 65536, n)
    las.gps_time = np.arange(n) * 1e-5
    las.reflectance = rng.random(n).astype(np.float32)
    las.write(str(path))


def child(src: str, out: str, tile_points: int) -> None:
    from pointgcn.data.build import SampleSettings
    from pointgcn.engine.streaming import stream_segment
    from pointgcn.io.chunks import ChunkReader

    settings = SampleSettings(2048, 1.5, 1.0)  # the shipped synth-rooms model's blocks
    grey = lambda pred: np.repeat(pred[:, None] / 12.0, 3, axis=1)  # noqa: E731
    las_out = out.endswith((".las", ".laz"))
    stream_segment(ChunkReader(src), out, LinearModel(), settings, {}, colorize=grey,
                   tile_points=tile_points, progress=False,
                   classification="pred" if las_out else None)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=float, nargs="+", default=[1e6])
    p.add_argument("--formats", nargs="+", default=list(FORMATS), choices=FORMATS)
    p.add_argument("--child", nargs=2, metavar=("SRC", "OUT"), help=argparse.SUPPRESS)
    p.add_argument("--make", nargs=2, metavar=("SRC", "N"), help=argparse.SUPPRESS)
    p.add_argument("--tile-points", type=int, default=500_000)
    p.add_argument("--rooms", type=int, default=6)
    p.add_argument("--room-points", type=int, default=60000)
    p.add_argument("--timeout", type=float, default=3600)
    a = p.parse_args()
    if a.child:
        child(*a.child, a.tile_points)
        return 0
    if a.make:
        write_las_scene(Path(a.make[0]), int(a.make[1]), make_rooms(a.rooms, a.room_points))
        return 0
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for size in a.sizes:
            n = int(size)
            src = tmp / f"scene_{n}.las"
            subprocess.run([sys.executable, __file__, "--make", str(src), str(n), "--rooms",
                            str(a.rooms), "--room-points", str(a.room_points)], check=True)
            for suffix in a.formats:
                out = tmp / f"out_{n}{suffix}"
                r = run_measured([__file__, "--child", str(src), str(out),
                                  "--tile-points", str(a.tile_points)], a.timeout)
                if out.exists():
                    r["out_mb"] = round(out.stat().st_size / 2**20, 1)
                    out.unlink()
                rows.append({"points": n, "out": suffix, **r})
                print(json.dumps(rows[-1]), flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print(f"\n{'points':>10} {'out':>5} {'seconds':>8} {'cpu s':>7} {'peak RSS MB':>11} "
          f"{'out MB':>7}")
    for r in rows:
        print(f"{r['points']:>10} {r['out']:>5} {r.get('seconds', '-'):>8} "
              f"{r.get('cpu_seconds', '-'):>7} {r.get('peak_rss_mb', '-'):>11} "
              f"{r.get('out_mb', '-'):>7}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
