"""Adapt a segmentation model to your own scan and classes from a few labelled points.

  pointgcn adapt --labels scan.ply --out mine.pt                      # the default room model
  pointgcn adapt --weights synth-rooms --labels scan.ply --classes names.txt --out mine.pt
  pointgcn adapt --labels picked.ply --scan scan.ply --out mine.pt    # labels in a second file

`--labels` is a cloud with a label field (`label`, or the one `--label-field` names) where −1
marks unlabelled points — e.g. the scan itself with a few strokes labelled in CloudCompare.
With `--scan`, the model runs over that scan and each labelled point takes the features of the
scan point at its position (nearest, within 1 cm). `--classes` is a text file, one class name
per line, in label order; without it the model's own classes are kept (labels must be among
them). The frozen backbone runs once (progress bar), a new last layer is fitted on 80% of the
labels and scored on the rest (and, with the model's own classes, compared with the model as
it was), and MINE.pt (a normal checkpoint: segment, eval, export, bench) and MINE.md (its
card) are written.
"""
from __future__ import annotations

from apps.cli import add_device_argument, positive_int, seed_int
from apps.paths import Input, Output

HELP = "fit a segmentation model to your scan and classes from a few labelled points"
SETTINGS = {"harmonise": "no_harmonise"}  # harmonise(enabled=False) is --no-harmonise
MAX_MATCH_M = 0.01


def add_arguments(p):
    from apps.source_args import add_harmonise_arguments

    p.add_argument("--weights", type=Input(str),
                   help="checkpoint or shipped model (default: the shipped room model)")
    p.add_argument("--labels", type=Input(), required=True,
                   help="cloud with a label field, −1 = unlabelled")
    p.add_argument("--scan", type=Input(), help="the whole scan, when --labels holds only "
                                                "the labelled points")
    p.add_argument("--label-field", default=None, metavar="FIELD",
                   help="the field holding the labels (default: the file's label column; a "
                        "LAS file's ASPRS codes only when named: --label-field classification)")
    p.add_argument("--classes", type=Input(), help="class names, one per line, in label order")
    p.add_argument("--out", type=Output(".pt", companions={".md": "the model card"}),
                   required=True, help="the adapted checkpoint (its card: OUT.md)")
    p.add_argument("--holdout", type=float, default=0.2,
                   help="share of the labelled points held out to score the result (0.2)")
    p.add_argument("--steps", type=positive_int, default=300, help="full-batch Adam steps")
    p.add_argument("--anchor", type=float, default=0.3,
                   help="with the model's own classes: pull of the new weights towards the "
                        "model's (0 fits this scan best, more keeps other scans better; "
                        "docs/adaptation.md; default 0.3)")
    add_harmonise_arguments(p)
    p.add_argument("--batch", type=positive_int, default=8, help="blocks per forward pass")
    add_device_argument(p)
    p.add_argument("--threads", type=positive_int)
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--no-progress", action="store_true")


def run(args) -> int:
    import numpy as np

    from apps.source_args import preflight
    from pointgcn.engine.adapt import adapt
    from pointgcn.data.build import SampleSettings
    from pointgcn.errors import InputError
    from apps.source_args import shipped_default
    from pointgcn.export.serve import open_model

    card = args.out.with_suffix(".md")  # checked with --out (its companion, apps/paths.py)
    if not 0 < args.holdout < 1:
        raise InputError(f"--holdout must be between 0 and 1, got {args.holdout}")
    if not args.anchor >= 0:
        raise InputError(f"--anchor must be ≥ 0, got {args.anchor}")
    labelled, labels = _labelled(args)
    cloud = _scan(args, labelled, labels) if args.scan else labelled
    if args.scan:
        labels = cloud.labels
    source = args.weights or shipped_default("segmentation", "--weights")
    loaded = open_model(source)
    if loaded.module is None:
        raise InputError(f"{source}: adapt needs PyTorch weights (a checkpoint), not an "
                         ".onnx file")
    model, cfg, meta = loaded.module, loaded.run_config, loaded.meta
    task = model.cfg["task"]
    old_names = list(meta.get("class_names") or [str(i) for i in range(model.cfg["n_classes"])])
    names = _class_names(args.classes) if args.classes else old_names
    seen = preflight(args, cloud, cfg).cloud
    result = adapt(model, seen, labels, names, SampleSettings.from_config(cfg), task,
                   same_classes=names == old_names, holdout=args.holdout, steps=args.steps,
                   anchor=args.anchor, batch=args.batch, seed=args.seed,
                   progress=not args.no_progress, device=args.device)
    m = result.metrics
    print(f"labelled points: {m['labelled']} (trained on {m['trained_on']}, scored on "
          f"{m['after']['points']})")
    if "before" in m:
        print(f"held-out before: OA {m['before']['oa']:.4f}  mIoU {m['before']['miou']:.4f}")
    print(f"held-out after:  OA {m['after']['oa']:.4f}  mIoU {m['after']['miou']:.4f}")
    c = m["calibration"]
    print(f"calibration: temperature {result.temperature:.3f}, held-out ECE "
          f"{c['ece_before']:.4f} → {c['ece_after']:.4f}")
    _write(args, result, cfg, meta, source, card, np.bincount(labels[labels >= 0],
                                                              minlength=len(names)))
    print(f"written: {args.out}, {card}")
    return 0


def _labelled(args):
    """(cloud, labels with −1 for unlabelled) from --labels."""
    import numpy as np

    from pointgcn.errors import InputError
    from pointgcn.io import read_points
    from pointgcn.io.columns import labels_field

    cloud = read_points(args.labels, as_mesh=False)
    if args.label_field is None and cloud.label_scheme is not None:  # e.g. LAS: ASPRS codes
        raise InputError(f"{args.labels}: its labels are {cloud.label_scheme.upper()} class "
                         "codes, not the model's classes; to train on them anyway, name the "
                         "field: --label-field classification")
    labels = labels_field(cloud, args.label_field)
    if labels is None:
        raise InputError(f"{args.labels}: no label field (name one with --label-field)")
    return cloud, np.where(labels >= 0, labels, -1).astype(np.int64)


def _scan(args, labelled, labels):
    """The whole scan with the labels moved onto its points (nearest within MAX_MATCH_M)."""
    import dataclasses

    import numpy as np
    from scipy.spatial import cKDTree

    from pointgcn.errors import InputError
    from pointgcn.io import read_points

    scan = read_points(args.scan, as_mesh=False)
    have = labels >= 0
    at = labelled.absolute_points()[have]
    dist, nearest = cKDTree(scan.absolute_points()).query(at, k=1)
    if (dist > MAX_MATCH_M).any():
        raise InputError(f"{int((dist > MAX_MATCH_M).sum())} labelled points lie more than "
                         f"{MAX_MATCH_M * 100:.0f} cm from any point of {args.scan}; are they "
                         "from this scan (same coordinates)?")
    moved = np.full(len(scan), -1, dtype=np.int64)
    moved[nearest] = labels[have]
    return dataclasses.replace(scan, labels=moved)


def _class_names(path) -> list[str]:
    from pointgcn.errors import InputError

    try:
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read class names ({e})") from None
    if not names or len(set(names)) != len(names):
        raise InputError(f"{path}: needs one distinct class name per line")
    return names


def _write(args, result, cfg, meta, source, card_path, counts) -> None:
    import json

    from pointgcn.io.atomic import atomic_path
    from pointgcn.models import save_checkpoint
    from pointgcn.models.conventions import conventions_of

    info = {"from": str(source), "labels": str(args.labels), "scan": str(args.scan or args.labels),
            "metrics": result.metrics,
            "labelled_per_class": dict(zip(result.class_names, map(int, counts)))}
    new_meta = {"class_names": result.class_names, "adapted": info,
                "temperature": result.temperature,
                "calibration": result.metrics["calibration"],
                "conventions": conventions_of(cfg).to_dict()}  # the backbone's, unchanged
    run_cfg = {k: v for k, v in cfg.items() if k != "conventions"}
    save_checkpoint(args.out, result.model, run_cfg, meta=new_meta)
    m = result.metrics
    rows = "\n".join(f"| {k} | {m[k]['oa']:.4f} | {m[k]['miou']:.4f} | {m[k]['points']} |"
                     for k in ("before", "after") if k in m)
    text = f"""# {args.out.stem}

Adapted from `{source}` by `pointgcn adapt` on the labelled points of `{info['labels']}`
({m['labelled']} labelled points, {m['trained_on']} trained on; frozen backbone, new last layer).
Classes: {', '.join(result.class_names)}.

## Held-out labelled points of the same scan
| model | OA | mIoU | points |
|---|---|---|---|
{rows}

Calibration: temperature {result.temperature:.3f} fitted on the held-out points; their
ECE {m['calibration']['ece_before']:.4f} → {m['calibration']['ece_after']:.4f} (the same
points, so in-sample for the temperature).

Labelled points per class: {json.dumps(info['labelled_per_class'])}
"""
    with atomic_path(card_path) as tmp:
        tmp.write_text(text)
