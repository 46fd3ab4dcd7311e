"""Label every point of a scanned room (or any cloud), or the parts of one object.

  pointgcn segment scan.ply --weights synth-rooms --out scan_pred.ply --png scan_pred.png

Reads any supported cloud (ply, pcd, xyz/txt/csv, npy/npz, las; a mesh's points are its
vertices, so a scanned, triangulated PLY is labelled vertex by vertex), checks it against the
model's conventions (a "preflight": up axis, units, colours — pointgcn.engine.harmonise; the
output keeps the input's own coordinates), splits it into the model's overlapping blocks, votes per point, and writes a PLY with a `pred` field and class
colours, and a class histogram. Ground truth is scored (OA / mIoU, and a comparison preview)
only from a column named as labels (`label`, `class`, …) in the model's class range, or from
the field `--labels FIELD` names — never from an unnamed trailing column or LAS ASPRS codes
(pointgcn.io.columns). Blocks are built a batch at a time, so memory grows only with the cloud
itself (the points, their votes and the output), not with the model. Part-segmentation models
(xyz input) label one object: its points are normalised and covered by samples of the training
size.
"""
from __future__ import annotations

from apps.cli import positive_int
from apps.paths import Input, Output

HELP = "label every point of a cloud (blocks + voting); writes PLY with pred and colours"
SETTINGS = {"harmonise": "no_harmonise"}  # harmonise(enabled=False) is --no-harmonise


def add_arguments(p):
    p.add_argument("input", type=Input(), help="cloud file (a mesh's vertices are its points)")
    from apps.source_args import add_harmonise_arguments, add_source_arguments
    add_source_arguments(p)
    add_harmonise_arguments(p)
    p.add_argument("--out", type=Output(".ply"), required=True, help="output PLY")
    p.add_argument("--png", type=Output(".png"), help="also render a preview PNG")
    p.add_argument("--labels", metavar="FIELD",
                   help="score against this per-point field of the input (default: its column "
                        "named label/class, if any; give e.g. `scalar` for an unnamed one)")
    p.add_argument("--drop-invalid", action="store_true",
                   help="drop points with NaN/Inf coordinates instead of refusing the file")
    p.add_argument("--batch", type=int, default=8,
                   help="blocks per forward pass (on a GPU: one copy each way per batch)")
    p.add_argument("--threads", type=positive_int, help="inference threads")
    p.add_argument("--seed", type=int, default=0, help="block sampling seed")
    p.add_argument("--stream", action="store_true",
                   help="label a cloud larger than memory tile by tile (ply/npy/las/laz in, "
                        "binary PLY with pred out; preflight on a subsample; no --png, no "
                        "extra input fields); chosen by itself when the cloud would not fit "
                        "in free memory")
    p.add_argument("--resume", action="store_true",
                   help="with --stream: continue a killed streaming run of the same --out")
    p.add_argument("--tile-points", type=int, default=500_000, metavar="N",
                   help="with --stream: points per tile (memory grows with it)")


def run(args) -> int:
    import dataclasses

    import numpy as np

    from apps.source_args import predictor_from_args, preflight
    from pointgcn.data.build import SampleSettings
    from pointgcn.engine.inference import check_distinct_points, segment_cloud, segment_object
    from pointgcn.engine.task_metrics import predict_labels
    from pointgcn.errors import InputError
    from pointgcn.io import ReadReport, ply_safe_fields, read_points, write_ply
    from pointgcn.io.columns import labels_field
    from pointgcn.viz.palettes import class_colors

    from apps.segment_stream import run_stream, too_big  # out-of-core: apps/segment_stream.py
    if args.stream or args.resume:
        return run_stream(args)
    if too_big(args.input):
        print("note: too large for this machine's free memory: streaming (as --stream)")
        return run_stream(args)
    if args.batch < 1:
        raise InputError(f"--batch must be ≥ 1, got {args.batch}")
    report = ReadReport()
    cloud = read_points(args.input, drop_invalid=args.drop_invalid, as_mesh=False, report=report)
    if report.dropped:
        print(f"dropped {report.dropped} points with NaN/Inf coordinates")
    if report.n_faces:
        print(f"note: a mesh: labelling its {len(cloud)} vertices ({report.n_faces} faces kept "
              "out of the output)")
    truth = labels_field(cloud, args.labels)
    if args.labels is None and cloud.label_scheme is not None:  # e.g. LAS ASPRS codes
        print(f"note: the file's labels are {cloud.label_scheme.upper()} class codes, not this "
              "model's classes: no metrics (--labels classification scores them anyway)")
        truth = None
    fields, notes = ply_safe_fields(cloud.fields)  # settle the output's fields before the work
    cloud = dataclasses.replace(cloud, fields=fields)
    for note in notes:
        print(f"note: {note}")
    predictor, cfg = predictor_from_args(args, "segmentation")
    if predictor.task == "classification":
        raise InputError("this is a classification model; use `pointgcn classify`")
    names = predictor.class_names
    scored, verdict = _scorable(truth, names, explicit=args.labels is not None)
    settings = SampleSettings.from_config(cfg)
    if predictor.task == "part_segmentation":
        def run_model(seen):
            return segment_object(seen, predictor, settings, batch=args.batch, seed=args.seed)

        def confidence(seen):  # mean top-part probability over the object's points
            return _mean_top_probability(run_model(seen))
    else:
        def run_model(seen):
            return segment_cloud(seen, predictor, settings, batch=args.batch, seed=args.seed)
        confidence = None  # scenes: the up axis comes from the floor (harmonise.py)
    check_distinct_points(cloud, predictor)  # before harmonising: nothing to turn or scale
    seen = preflight(args, cloud, cfg, confidence).cloud
    logits = run_model(seen)
    pred = predict_labels(predictor.task, logits.T[None])[0]
    out = dataclasses.replace(cloud, fields={**cloud.fields, "pred": pred.astype(np.int32)})
    palette = "s3dis" if predictor.task == "segmentation" and len(names) == 13 else (
        "parts" if predictor.task == "part_segmentation" else "generic")
    out.colors = class_colors(pred, palette, len(names))
    write_ply(args.out, out)
    print(f"{len(cloud)} points → {args.out}")
    counts = np.bincount(pred, minlength=len(names))
    for name, c in zip(names, counts):
        if c:
            print(f"  {name:12s} {c:9d}  {100 * c / len(pred):5.1f}%")
    if scored:
        print(_score(pred, truth, predictor.task, names))
    elif verdict:
        print(verdict)
    if args.png:
        from pointgcn.viz.render import render_png
        if scored:
            out.fields["truth"] = truth.astype(np.int32)
            kw = dict(labels="truth", compare="pred")
        else:
            kw = dict(labels="pred")
        if predictor.task == "part_segmentation":
            kw["up"] = "y"  # PartNet shapes are y-up
        res = render_png(out, args.png, palette=palette, class_names=names, **kw)
        print(f"preview → {res.path} ({res.backend})")
    return 0


def _mean_top_probability(logits) -> float:
    import numpy as np

    z = logits - logits.max(1, keepdims=True)
    p = np.exp(z)
    return float((p.max(1) / p.sum(1)).mean())


def _scorable(truth, names, explicit: bool) -> tuple[bool, str]:
    """Whether `truth` is in this model's class scheme: negative ids are unlabelled; an id
    beyond the model's classes means another label set — no metrics (never partial ones), and
    an error when the user named the field."""
    from pointgcn.errors import InputError

    if truth is None:
        return False, ""
    if not (truth >= 0).any():
        return False, "the file's labels are all negative (unlabelled): no metrics"
    if truth.max() >= len(names):
        message = (f"the labels go up to {int(truth.max())}, beyond this model's classes "
                   f"0–{len(names) - 1}: another label set")
        if explicit:
            raise InputError(f"--labels: {message}")
        return False, f"note: {message}, no metrics"
    return True, ""


def _score(pred, labels, task: str, names) -> str:
    """Metrics against the file's labels; negative labels are unlabelled and ignored."""
    import numpy as np

    from pointgcn.engine.metrics import ConfusionMatrix, PartNetIoU

    known = labels >= 0
    skipped = f" ({int((~known).sum())} unlabelled points ignored)" if not known.all() else ""
    if task == "part_segmentation":
        t = np.where(known, labels, 0)  # PartNet's rule ignores label 0 ("other")
        m = PartNetIoU(len(names)).update(pred[None], t[None]).summary()
        return f"against the file's labels: part mIoU {m['part_miou']:.4f}{skipped}"
    cm = ConfusionMatrix(len(names)).update(pred[known], labels[known])
    return f"against the file's labels: OA {cm.oa():.4f}  mIoU {cm.miou():.4f}{skipped}"
