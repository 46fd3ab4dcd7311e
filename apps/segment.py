"""Label every point of a scanned room (or any cloud), or the parts of one object.

  pointgcn segment scan.ply --weights synth-rooms --out scan_pred.ply --png scan_pred.png
  pointgcn segment tile.laz --out tile_pred.laz            # predictions in `classification`

Reads any supported cloud (ply, pcd, xyz/txt/csv, npy/npz, las; a mesh's points are its
vertices, so a scanned, triangulated PLY is labelled vertex by vertex), checks it against the
model's conventions (a "preflight": up axis, units, colours — pointgcn.engine.harmonise; the
output keeps the input's own coordinates), splits it into the model's overlapping blocks, votes
per point, and writes the input again — its colours and every per-point field — with the fields
`pred` (class id), `confidence` (softmax probability of that class) and `entropy` (of the
softmax, nats; pointgcn.engine.confidence), as .ply, .las/.laz, .npy, .npz or .txt by the
suffix of `--out`, and prints a class histogram. `--colors class` paints class colours instead
(the default for an input without colours; the preview always shows classes);
`--min-confidence P` marks less sure points −1 in `pred`. A LAS/LAZ input written as LAS/LAZ
keeps its header and every other dimension byte for byte, with the predictions in
`classification` (or `--las-field pred`: an extra-bytes dimension); other inputs get LAS 1.4
with a scale that keeps their coordinates (pointgcn.io.las_write). Ground truth is scored
(OA / mIoU, and a comparison preview) only from a column named as labels (`label`, `class`,
…) in the model's class range, or from the field `--labels FIELD` names — never from an
unnamed trailing column or LAS ASPRS codes (pointgcn.io.columns). Blocks are built a batch
at a time, so memory grows only with the cloud itself (the points, their votes and the
output), not with the model. Part-segmentation models (xyz input) label one object: its
points are normalised and covered by samples of the training size.
"""
from __future__ import annotations

from apps.cli import positive_int, seed_int
from apps.paths import Input, Output

HELP = ("label every point of a cloud (blocks + voting); writes it back (ply, las/laz, npy, npz, "
        "txt) with pred, confidence and entropy")
OUT_SUFFIXES = (".ply", ".las", ".laz", ".npy", ".npz", ".txt")  # pointgcn.io.WRITERS (tested)
LAS = (".las", ".laz")
SETTINGS = {"harmonise": "no_harmonise"}  # harmonise(enabled=False) is --no-harmonise


def add_arguments(p):
    p.add_argument("input", type=Input(), help="cloud file (a mesh's vertices are its points)")
    from apps.source_args import add_harmonise_arguments, add_source_arguments
    add_source_arguments(p)
    add_harmonise_arguments(p)
    p.add_argument("--out", type=Output(*OUT_SUFFIXES), required=True,
                   help="output cloud, by suffix: " + " ".join(OUT_SUFFIXES))
    p.add_argument("--colors", choices=("input", "class"),
                   help="output colours: the input's own (default when it has colours) or "
                        "class colours")
    p.add_argument("--min-confidence", type=float, metavar="P",
                   help="mark points whose confidence is below P (0–1) as -1 in pred")
    p.add_argument("--las-field", choices=("classification", "pred"),
                   help="LAS/LAZ output: predictions in `classification` (default for a LAS "
                        "input) or in an extra-bytes dimension `pred` (default otherwise)")
    p.add_argument("--png", type=Output(".png"), help="also render a preview PNG")
    p.add_argument("--labels", metavar="FIELD",
                   help="score against this per-point field of the input (default: its column "
                        "named label/class, if any; give e.g. `scalar` for an unnamed one)")
    p.add_argument("--drop-invalid", action="store_true",
                   help="drop points with NaN/Inf coordinates instead of refusing the file")
    p.add_argument("--batch", type=int, default=8,
                   help="blocks per forward pass (on a GPU: one copy each way per batch)")
    p.add_argument("--threads", type=positive_int, help="inference threads")
    p.add_argument("--seed", type=seed_int, default=0, help="block sampling seed")
    p.add_argument("--stream", action="store_true",
                   help="label a cloud larger than memory tile by tile (ply/npy/las/laz in; "
                        "out as in memory, a chunk at a time: .ply .las .laz .npy .txt; "
                        "preflight on a subsample; --png of every k-th point; no "
                        "--drop-invalid); chosen "
                        "by itself when the cloud would not fit in free memory")
    p.add_argument("--resume", action="store_true",
                   help="with --stream: continue a killed streaming run of the same --out")
    p.add_argument("--tile-points", type=int, default=500_000, metavar="N",
                   help="with --stream: points per tile (memory grows with it)")


def run(args) -> int:
    import dataclasses

    import numpy as np

    from apps.source_args import predictor_from_args, preflight
    from pointgcn.data.build import SampleSettings
    from pointgcn.engine.confidence import prediction_confidence
    from pointgcn.engine.inference import check_distinct_points, segment_cloud, segment_object
    from pointgcn.engine.task_metrics import predict_labels
    from pointgcn.errors import InputError
    from pointgcn.io import ReadReport, output_fields, read_points, write_points
    from pointgcn.io.columns import labels_field
    from pointgcn.io.stream_writers import ADDED  # the fields segment adds
    from pointgcn.viz.palettes import class_colors

    from apps.segment_stream import run_stream, too_big  # out-of-core: apps/segment_stream.py
    if args.stream or args.resume:
        return run_stream(args)
    if too_big(args.input):
        print("note: too large for this machine's free memory: streaming (as --stream)")
        return run_stream(args)
    if args.batch < 1:
        raise InputError(f"--batch must be ≥ 1, got {args.batch}")
    if args.min_confidence is not None and not 0 <= args.min_confidence <= 1:
        raise InputError(f"--min-confidence must lie in 0–1, got {args.min_confidence}")
    plan = OutputPlan(args)
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
    colors = args.colors or ("input" if cloud.colors is not None else "class")
    if colors == "input" and cloud.colors is None:
        raise InputError(f"--colors input: {args.input} has no colours")
    if plan.template is None:  # settle the output's fields before the work
        fields, notes = output_fields(plan.suffix, cloud.fields)
        cloud = dataclasses.replace(cloud, fields=fields)
        for note in notes:
            print(f"note: {note}")
    for name in ADDED:
        if name in cloud.fields:
            print(f"note: the input's field {name!r} is replaced by this run's")
    predictor, cfg = predictor_from_args(args, "segmentation")
    if predictor.task == "classification":
        raise InputError("this is a classification model; use `pointgcn classify`")
    names = predictor.class_names
    plan.check_classes(len(names), colors)
    scored, verdict = _scorable(truth, names, explicit=args.labels is not None)
    settings = SampleSettings.from_config(cfg)
    if predictor.task == "part_segmentation":
        def run_model(seen):
            return segment_object(seen, predictor, settings, batch=args.batch, seed=args.seed)

        def confidence(seen):  # mean top-part probability over the object's points, at the
            # network's own temperature (harmonise's auto-up margin was measured there)
            own = run_model(seen) * getattr(predictor, "temperature", 1.0)
            return float(prediction_confidence(own)[1].mean())
    else:
        def run_model(seen):
            return segment_cloud(seen, predictor, settings, batch=args.batch, seed=args.seed)
        confidence = None  # scenes: the up axis comes from the floor (harmonise.py)
    check_distinct_points(cloud, predictor)  # before harmonising: nothing to turn or scale
    seen = preflight(args, cloud, cfg, confidence).cloud
    logits = run_model(seen)
    best = predict_labels(predictor.task, logits.T[None])[0]
    best, sure, entropy = prediction_confidence(logits, best)
    pred = best.astype(np.int32)
    if args.min_confidence is not None:
        unsure = sure < args.min_confidence
        pred[unsure] = -1
        print(f"{int(unsure.sum())} points below confidence {args.min_confidence:g}: "
              "pred -1")
    out = dataclasses.replace(cloud, fields={**cloud.fields, "pred": pred,
                                             "confidence": sure, "entropy": entropy})
    palette = "s3dis" if predictor.task == "segmentation" and len(names) == 13 else (
        "parts" if predictor.task == "part_segmentation" else "generic")
    if colors == "class":
        out.colors = class_colors(pred, palette, len(names))
    for note in write_points(args.out, out, template=plan.template,
                             classification=plan.classification):
        print(f"note: {note}")
    where = " (pred in classification)" if plan.classification else ""
    print(f"{len(cloud)} points → {args.out}{where}")
    counts = np.bincount(pred[pred >= 0], minlength=len(names))
    for name, c in [*zip(names, counts), ("(unsure, -1)", int((pred < 0).sum()))]:
        if c:
            print(f"  {name:12s} {c:9d}  {100 * c / len(pred):5.1f}%")
    if scored:  # the model's own labels, before --min-confidence
        print(_score(best, truth, predictor.task, names))
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


class OutputPlan:
    """Where the predictions go in `--out`, settled before any work: its suffix, the LAS input
    whose layout a LAS output keeps (`template`), the field stored as LAS `classification`."""

    def __init__(self, args):
        from pointgcn.errors import InputError

        self.suffix = args.out.suffix.lower()
        las_out = self.suffix in LAS
        las_in = args.input.suffix.lower() in LAS
        if args.las_field is not None and not las_out:
            raise InputError(f"--las-field applies to .las/.laz output, not {self.suffix}")
        field = args.las_field or ("classification" if las_in else "pred")
        if las_out and field == "classification" and args.min_confidence is not None:
            raise InputError("--min-confidence marks points -1, which LAS classification cannot "
                             "hold; add --las-field pred")
        self.template = args.input if las_in and las_out else None
        self.classification = "pred" if las_out and field == "classification" else None
        self.args = args

    def check_classes(self, n_classes: int, colors: str) -> None:
        """A LAS classification too narrow for the model's classes, a LAS input's own
        pred/confidence/entropy dimension that cannot hold this run's, or no RGB for class
        colours the user asked for: said before the work."""
        import math

        from pointgcn.errors import InputError
        from pointgcn.io.las_write import classification_limit, dims_refusing

        if self.suffix not in LAS:
            return
        top, rgb = classification_limit(self.template)
        written = {"confidence": (0.0, 1.0, True), "entropy": (0.0, math.log(n_classes), True)}
        if not self.classification:
            written["pred"] = (-1 if self.args.min_confidence is not None else 0, n_classes - 1,
                               False)
        refused = dims_refusing(self.template, written) if self.template else []
        if refused:
            (name, (lo, hi)), (least, most, _) = refused[0], written[refused[0][0]]
            raise InputError(f"{self.template} has its own LAS dimension {name!r} ({lo}–{hi}), "
                             f"which cannot hold this run's {name} ({least:g}–{most:.3g}): "
                             "write another format, or rename that dimension")
        if self.classification and n_classes - 1 > top:
            raise InputError(f"the model has {n_classes} classes; LAS classification of "
                             f"{self.template}'s point format holds 0–{top}: add --las-field "
                             "pred")
        if not rgb and self.args.colors == "class":
            print(f"note: {self.template}'s point format has no RGB: class colours not written")


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
