"""Look at a point cloud, a prediction against ground truth, or a training run.

  pointgcn viz room.ply                       Open3D window if a display exists, else room.png
  pointgcn viz room.ply --png room.png        headless picture
  pointgcn viz out.ply --labels pred          colour by a per-point field, class palette + legend
  pointgcn viz out.ply --compare-field pred   ground truth (--labels, default label) beside the
                                              prediction (field pred), wrong points red
  pointgcn viz truth.ply --compare out.ply    the same with the prediction in another file with
                                              the same points (its --compare-field, default pred
                                              if present, else label)
  pointgcn viz runs/exp1 --png curves.png     training curves of a run folder (its metrics.jsonl;
                                              a .jsonl file works too; default RUN/curves.png)

Colours: --color auto picks class when labels are asked for, else the file's RGB, else height.
Rooms (auto: wider than 3 m, or S3DIS palette) are seen obliquely from above with the ceiling
removed (S3DIS ceiling label, else the top 10% of z); objects from a 3/4 view.
Headless rendering tries Open3D OffscreenRenderer, then Open3D's legacy EGL Visualizer (both in
a child process), then matplotlib; --backend or POINTGCN_RENDER_BACKEND forces one.
"""
from __future__ import annotations

import re
from pathlib import Path

from apps.paths import Input, Output

HELP = "look at a cloud, a prediction vs ground truth, or training curves (window or PNG)"


def add_arguments(parser):
    parser.add_argument("input", type=Input(), help="point cloud / mesh file, or a run folder or metrics .jsonl")
    parser.add_argument("--png", metavar="OUT.png", type=Output(".png"),
                        help="write a picture instead of opening a window")
    parser.add_argument("--labels", metavar="FIELD",
                        help="per-point class field to colour by (label, pred or any PLY field)")
    parser.add_argument("--color", choices=("auto", "rgb", "height", "class"), default="auto",
                        help="colour by the file's RGB, by height, or by class (default: auto)")
    parser.add_argument("--palette", choices=("auto", "s3dis", "modelnet40", "parts", "generic"),
                        default="auto", help="class colours and names (default: auto)")
    parser.add_argument("--compare", metavar="OTHER", type=Input(),
                        help="a cloud with the same points holding the prediction")
    parser.add_argument("--compare-field", metavar="FIELD",
                        help="prediction field (in OTHER if given, else in INPUT)")
    parser.add_argument("--view", choices=("auto", "room", "object"), default="auto",
                        help="camera: room = oblique from above without ceiling (default: auto)")
    parser.add_argument("--up", choices=("z", "y"), default="z", help="the cloud's up axis")
    parser.add_argument("--keep-ceiling", action="store_true",
                        help="do not remove a room's ceiling")
    parser.add_argument("--backend", choices=("auto", "open3d", "open3d-legacy", "matplotlib"),
                        help="force a headless renderer (default: first that works)")
    parser.add_argument("--size", metavar="WxH",
                        help="picture size in pixels (default 1280x960; 1600x760 side by side)")
    parser.add_argument("--title", help="title printed above the picture")
    parser.add_argument("--mesh-points", type=int, default=10000, metavar="N",
                        help="points sampled from a mesh input (default: 10000)")
    parser.add_argument("--max-points", type=int, default=2_000_000, metavar="N",
                        help="show a random subset of bigger clouds (default 2,000,000: a 10M "
                             "point cloud drawn whole needed ≈ 5 GB); accuracy is then over those")


def _size(text: str) -> tuple[int, int]:
    from pointgcn.errors import InputError

    m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text)
    if not m or not (64 <= int(m[1]) <= 8192 and 64 <= int(m[2]) <= 8192):
        raise InputError(f"--size must be WxH with 64–8192 pixels each, e.g. 1280x960 "
                         f"(got {text!r})")
    return int(m[1]), int(m[2])


def _curves(args, size) -> int:
    from apps.paths import check_derived
    from pointgcn.errors import InputError
    from pointgcn.viz.plots import plot_training_curves

    cloud_only = [flag for flag, value in (("--labels", args.labels), ("--compare", args.compare),
                                           ("--compare-field", args.compare_field)) if value]
    if cloud_only:
        raise InputError(f"{', '.join(cloud_only)} apply to clouds, not to training curves")
    src = Path(args.input)
    out = Path(args.png) if args.png else (src if src.is_dir() else src.parent) / "curves.png"
    if not args.png:
        check_derived(args, out, "the default picture", (".png",))
    plot_training_curves(src, out, title=args.title, size=size or (1280, 960))
    print(f"wrote {out} (training curves)")
    return 0


def _read(path: str, mesh_points: int):
    from pointgcn.io import ReadReport, read_points

    report = ReadReport()
    cloud = read_points(path, n_points=mesh_points, drop_invalid=True, report=report)
    if report.dropped:
        print(f"note: {path}: dropped {report.dropped} invalid points/faces")
    return cloud


def run(args) -> int:
    import numpy as np

    from apps.paths import check_derived
    from pointgcn.errors import InputError
    from pointgcn.viz import cloud_field, has_display, render_png, show

    size = _size(args.size) if args.size else None
    src = Path(args.input)
    if src.is_dir() or src.suffix.lower() == ".jsonl":
        return _curves(args, size)
    from pointgcn.io.mesh import MAX_SAMPLES

    if not 1 <= args.mesh_points <= MAX_SAMPLES:
        raise InputError(f"--mesh-points must be 1 to {MAX_SAMPLES:,}")
    cloud = _read(args.input, args.mesh_points)
    labels, compare = args.labels, None
    if args.compare:
        other = _read(args.compare, args.mesh_points)
        if len(other) != len(cloud):
            raise InputError(f"{args.compare} has {len(other)} points but {args.input} has "
                             f"{len(cloud)}; --compare needs the same points")
        field = args.compare_field or ("pred" if "pred" in other.fields else "label")
        compare = cloud_field(other, field)
        labels = cloud_field(cloud, labels or "label")
    elif args.compare_field:
        compare = args.compare_field
        labels = labels or "label"
    if args.max_points < 1:
        raise InputError(f"--max-points must be ≥ 1, got {args.max_points}")
    if len(cloud) > args.max_points:  # the same random points in every panel
        keep = np.sort(np.random.default_rng(0).choice(len(cloud), args.max_points,
                                                        replace=False))
        print(f"note: showing {args.max_points:,} of {len(cloud):,} points (a random subset; "
              "--max-points to change)")
        cloud = cloud.subset(keep)
        labels = labels[keep] if isinstance(labels, np.ndarray) else labels
        compare = compare[keep] if isinstance(compare, np.ndarray) else compare
    options = dict(color_by=args.color, labels=labels, compare=compare, palette=args.palette,
                   view=args.view, up=args.up, remove_ceiling=False if args.keep_ceiling else None,
                   backend=None if args.backend in (None, "auto") else args.backend)
    if args.png is None:
        check_derived(args, src.with_suffix(".png"), "the default picture", (".png",))
    if args.png is None and has_display():
        result = show(cloud, png=src.with_suffix(".png"), title=args.title, size=size, **options)
        print(result.message)
        result = result.png
    else:
        out = Path(args.png) if args.png else src.with_suffix(".png")
        if args.png is None:
            print(f"no display (DISPLAY/WAYLAND_DISPLAY unset or unreachable): writing {out}")
        result = render_png(cloud, out, title=args.title, size=size, **options)
    if result is not None:
        for note in result.notes:
            print(f"note: {note}")
        extra = f", accuracy {100 * result.accuracy:.1f}%" if result.accuracy is not None else ""
        print(f"wrote {result.path} (backend {result.backend}, {result.points} points{extra})")
    return 0
