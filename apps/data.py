"""Data sets: write the procedural ones, prepare the real ones, inspect any file or folder.

  pointgcn data synth rooms|shapes|parts --out DIR [--n N] [--seed S] [--overwrite]
      write the procedural rooms (S3DIS raw tree), shapes (ModelNet40 OFF tree) or parts
      (PartNet sem_seg_h5), deterministic for the seed, into DIR/<the data set's folder>; an
      existing non-empty folder there is refused, unless --overwrite is given and it holds
      only an earlier `data synth` output of the same kind
  pointgcn data prepare s3dis --src RAW --out DIR [--blocks]
      raw S3DIS tree → per-room Area_N_<room>.npy (x y z r g b label, PointNet's layout);
      --blocks also writes PointNet's indoor3d_sem_seg_hdf5_data (1 m blocks, stride 0.5);
      prints per room what was repaired or dropped, then one summary line (as `train` does)
  pointgcn data prepare modelnet40 --src RAW --out DIR [--points N] [--drop-invalid]
      OFF tree or modelnet40_normal_resampled → modelnet_{train,test}.npz (N points per shape);
      --drop-invalid samples meshes without their NaN/Inf faces (reported per shape)
  pointgcn data prepare partnet --src SEM_SEG_H5 --out DIR [--category C] [--points N]
      check a sem_seg_h5 tree and copy it (some categories, N points per shape) in that layout
  pointgcn data info PATH [--json]
      a file: points, fields, colours/labels, bounds, label histogram; a folder: which data
      set layout it is, counts per split/area/class, channels
"""
from __future__ import annotations

import json

from apps.cli import seed_int
from apps.paths import Input, OutputFolder
from pointgcn.tasks import DEFAULT_POINTS

HELP = "write synthetic data sets, prepare S3DIS/ModelNet40/PartNet, inspect files and folders"

SYNTH_DEFAULT_N = {"rooms": 12, "shapes": 20, "parts": 60}
SYNTH_MIN_N = {"rooms": 1, "shapes": 2, "parts": 3}
SYNTH_WHY = {"rooms": "at least one room", "shapes": "a train and a test shape per class",
             "parts": "a train, a val and a test shape"}


def add_arguments(parser):
    sub = parser.add_subparsers(dest="action", metavar="<action>", required=True)
    synth = sub.add_parser("synth", help="write a procedural data set in a published layout")
    synth.add_argument("kind", choices=("rooms", "shapes", "parts"))
    synth.add_argument("--out", type=OutputFolder(), required=True, help="output folder")
    synth.add_argument("--n", type=int, default=None,
                       help="rooms (≥ 1) / shapes per class (≥ 2: train and test) / part "
                            f"shapes (≥ 3: train, val, test); defaults {SYNTH_DEFAULT_N}")
    synth.add_argument("--seed", type=seed_int, default=0)
    synth.add_argument("--style", choices=("default", "shifted"), default="default",
                       help="rooms: shifted = another scanner and building (3× noise, half "
                            "the points, warm colours, other room mix) to test transfer")
    synth.add_argument("--overwrite", action="store_true",
                       help="replace an earlier `data synth` output of this kind (refused if it "
                            "holds anything synth did not write)")

    prep = sub.add_parser("prepare", help="convert a real data set into ready-to-train files")
    prep.add_argument("dataset", choices=("s3dis", "modelnet40", "modelnet10", "partnet"),
                      help="modelnet40/modelnet10: any <class>/{train,test}/ tree of meshes or "
                           "clouds, resampled text files, or h5")
    prep.add_argument("--src", type=Input(), required=True, help="the data set as downloaded")
    prep.add_argument("--out", type=OutputFolder(), required=True, help="output folder: new or empty; written whole or not at all")
    prep.add_argument("--blocks", action="store_true",
                      help="s3dis: also write PointNet's h5 blocks")
    prep.add_argument("--points", type=int, default=None,
                      help="modelnet: points per shape (default "
                           f"{DEFAULT_POINTS['classification']}); partnet: points kept "
                           "per shape (default all)")
    prep.add_argument("--drop-invalid", action="store_true",
                      help="modelnet: drop mesh faces (or cloud points) with NaN/Inf corners "
                           "(reported) instead of refusing the shape")
    prep.add_argument("--category", action="append", default=None,
                      help="partnet: only this category (repeatable)")
    prep.add_argument("--seed", type=seed_int, default=0)
    prep.add_argument("--no-progress", action="store_true", help="no progress bar")

    info = sub.add_parser("info", help="describe a point-cloud file or a data-set folder")
    info.add_argument("path", type=Input())
    info.add_argument("--json", action="store_true", help="print JSON")


def run(args) -> int:
    return {"synth": _synth, "prepare": _prepare, "info": _info}[args.action](args)


def _synth(args) -> int:
    from pointgcn.errors import InputError

    n = SYNTH_DEFAULT_N[args.kind] if args.n is None else args.n
    least = SYNTH_MIN_N[args.kind]
    if n < least:
        raise InputError(f"--n must be ≥ {least} for {args.kind} ({SYNTH_WHY[args.kind]}), "
                         f"got {n}")
    from pointgcn.data import synthetic

    writer, key = {"rooms": (synthetic.write_rooms, "n_rooms"),
                   "shapes": (synthetic.write_shapes, "n_per_class"),
                   "parts": (synthetic.write_parts, "n_shapes")}[args.kind]
    if args.style != "default" and args.kind != "rooms":
        raise InputError("--style applies to rooms only")
    style = {"style": args.style} if args.kind == "rooms" else {}
    path = writer(args.out, **{key: n}, seed=args.seed, overwrite=args.overwrite, **style)
    print(f"wrote {args.kind} to {path}")
    return 0


def _prepare(args) -> int:
    from pointgcn.data.report import DataReport
    from pointgcn.errors import InputError

    progress = not args.no_progress
    if args.points is not None and args.points < 1:
        raise InputError(f"--points must be ≥ 1, got {args.points}")
    if args.drop_invalid and not args.dataset.startswith("modelnet"):
        raise InputError("--drop-invalid applies to modelnet shapes only")
    if args.dataset == "s3dis":
        from pointgcn.data.s3dis import prepare_s3dis

        report = DataReport("rooms")
        s = prepare_s3dis(args.src, args.out, blocks=args.blocks, seed=args.seed,
                          progress=progress, report=report)
        print(f"wrote {s['rooms']} rooms ({s['points']} points) to {args.out}"
              + (f", {s['blocks']} blocks" if args.blocks else ""))
    elif args.dataset.startswith("modelnet"):
        from pointgcn.data.modelnet import prepare_modelnet40

        report = DataReport("shapes")
        n_points = args.points or DEFAULT_POINTS["classification"]
        counts = prepare_modelnet40(args.src, args.out, n_points=n_points, seed=args.seed,
                                    progress=progress, drop_invalid=args.drop_invalid,
                                    drop_switch="--drop-invalid", report=report,
                                    variant=args.dataset)
        print(f"wrote {', '.join(f'{v} {k}' for k, v in counts.items())} shapes to {args.out}")
    else:
        from pointgcn.data.partnet import prepare_partnet

        counts = prepare_partnet(args.src, args.out, categories=args.category,
                                 n_points=args.points, seed=args.seed, progress=progress)
        report = DataReport()  # PartNet's h5 values are checked whole: nothing is dropped
        print(f"wrote {len(counts)} task splits ({sum(counts.values())} shapes) to {args.out}")
    for line in report.lines():
        print(line)
    return 0


def _info(args) -> int:
    from pointgcn.data.describe import describe, format_info

    info = describe(args.path)
    if "invalid_points" in info:
        info["invalid_points"] += "; segment and classify need --drop-invalid"
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0
