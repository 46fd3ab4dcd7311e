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


def child(src: str, out: str, tile_points: int, memory: bool = False) -> None:
    """One streamed run; `memory`: the in-memory peer (apps/segment.py's steps: read_points,
    the room voting, confidence, the input's fields kept, write_points)."""
    from pointgcn.data.build import SampleSettings
    from pointgcn.engine.confidence import prediction_confidence
    from pointgcn.engine.inference import predict_room
    from pointgcn.engine.streaming import stream_segment
    from pointgcn.io import output_fields, read_points, write_points
    from pointgcn.io.chunks import ChunkReader

    settings = SampleSettings(2048, 1.5, 1.0)  # the shipped synth-rooms model's blocks
    grey = lambda pred: np.repeat(pred[:, None] / 12.0, 3, axis=1)  # noqa: E731
    las_out = out.endswith((".las", ".laz"))
    if not memory:
        stream_segment(ChunkReader(src), out, LinearModel(), settings, {}, colorize=grey,
                       tile_points=tile_points, progress=False,
                       classification="pred" if las_out else None)
        return
    cloud = read_points(src)
    if not las_out:
        cloud.fields = output_fields(Path(out).suffix, cloud.fields)[0]
    logits = predict_room(cloud, LinearModel(), 13, settings.block, settings.stride,
                          settings.n_points)
    pred, sure, entropy = prediction_confidence(logits, logits.argmax(1))
    del logits
    cloud.fields = {**cloud.fields, "pred": pred.astype(np.int32), "confidence": sure,
                    "entropy": entropy}
    write_points(out, cloud, template=src if las_out else None,
                 classification="pred" if las_out else None)


def same_output(a: Path, b: Path) -> bool:
    """Byte for byte; LAS/LAZ by header, VLR records and point records (laspy 2.7 fills an
    extra-bytes dimension's min/max statistics from the first point of each write call)."""
    if a.suffix not in (".las", ".laz"):
        return a.read_bytes() == b.read_bytes()
    import laspy

    x, y = laspy.read(str(a)), laspy.read(str(b))
    return (x.point_format == y.point_format and x.points.array.tobytes() ==
            y.points.array.tobytes() and list(x.header.scales) == list(y.header.scales) and
            list(x.header.offsets) == list(y.header.offsets) and
            [v.user_id for v in x.header.vlrs] == [v.user_id for v in y.header.vlrs])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=float, nargs="+", default=[1e6])
    p.add_argument("--formats", nargs="+", default=list(FORMATS), choices=FORMATS)
    p.add_argument("--child", nargs=2, metavar=("SRC", "OUT"), help=argparse.SUPPRESS)
    p.add_argument("--make", nargs=2, metavar=("SRC", "N"), help=argparse.SUPPRESS)
    p.add_argument("--memory", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--peer", action="store_true",
                   help="also run the in-memory path on the smallest size, and compare outputs")
    p.add_argument("--tile-points", type=int, default=500_000)
    p.add_argument("--rooms", type=int, default=6)
    p.add_argument("--room-points", type=int, default=60000)
    p.add_argument("--timeout", type=float, default=3600)
    a = p.parse_args()
    if a.child:
        child(*a.child, a.tile_points, a.memory)
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
                paths = ["stream"] + ["in-memory"] * (a.peer and size == min(a.sizes))
                for path in paths:
                    out = tmp / f"out_{n}_{path}{suffix}"
                    r = run_measured([__file__, "--child", str(src), str(out),
                                      "--tile-points", str(a.tile_points)]
                                     + ["--memory"] * (path == "in-memory"), a.timeout)
                    if out.exists():
                        r["out_mb"] = round(out.stat().st_size / 2**20, 1)
                    rows.append({"points": n, "out": suffix, "path": path, **r})
                    if path == "in-memory" and out.exists():
                        rows[-1]["same_as_stream"] = same_output(
                            out, tmp / f"out_{n}_stream{suffix}")
                    print(json.dumps(rows[-1]), flush=True)
                for path in paths:
                    (tmp / f"out_{n}_{path}{suffix}").unlink(missing_ok=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print(f"\n{'points':>10} {'out':>5} {'path':>10} {'seconds':>8} {'cpu s':>7} "
          f"{'peak RSS MB':>11} {'out MB':>7} same")
    for r in rows:
        print(f"{r['points']:>10} {r['out']:>5} {r['path']:>10} {r.get('seconds', '-'):>8} "
              f"{r.get('cpu_seconds', '-'):>7} {r.get('peak_rss_mb', '-'):>11} "
              f"{r.get('out_mb', '-'):>7} {r.get('same_as_stream', '')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
