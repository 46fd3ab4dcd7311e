"""`segment --stream`: label a cloud larger than memory tile by tile (pointgcn.engine.streaming).

Kept apart from apps/segment.py, which calls `run_stream` for --stream / --resume, and on its
own (with a note) when `too_big`: a streamable file whose in-memory run would need more than
the memory available now (≈ BYTES_PER_POINT per point, measured: docs/performance.md). The
preflight (up axis, units, colours) runs on an even subsample; streaming labels the cloud as
it is, so a cloud the preflight would turn or scale is refused (convert it, or --no-harmonise);
the output is what in-memory segment writes for the input — its colours (or --colors class),
every field, pred, confidence and entropy; a LAS input written as LAS keeps every dimension,
predictions in classification or --las-field pred; --min-confidence marks less sure points −1
— as .ply, .las/.laz, .npy or .txt, a chunk at a time (pointgcn.io.stream_writers; .npz, a zip
of whole arrays, is refused); --png draws every k-th point (≤ PREVIEW_POINTS) gathered while
writing; --labels FIELD scores against that column, its range checked in the preflight's pass
(before the work, as in memory). Progress bars (with ETA) go to stderr.
"""
from __future__ import annotations

import os

BYTES_PER_POINT = 300  # in-memory segment: ≈ 225 measured at 10 M points, plus a margin
PREVIEW_POINTS = 1_000_000  # --png draws every k-th point, at most this many (≈ 30 MB)


def available_memory() -> int | None:
    """MemAvailable from /proc/meminfo in bytes (None where there is none)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def too_big(path) -> bool:
    """Whether `path` is a streamable cloud too large to segment in memory here."""
    from pointgcn.errors import InputError
    from pointgcn.io.chunks import ChunkReader

    free = available_memory()
    if free is None:
        return False
    try:
        n = ChunkReader(path).n
    except InputError:  # not streamable: the in-memory path reads it (or says why not)
        return False
    return n * BYTES_PER_POINT > free


def run_stream(args) -> int:
    import numpy as np

    from apps.source_args import predictor_from_args
    from pointgcn.data.build import SampleSettings
    from pointgcn.engine.metrics import ConfusionMatrix
    from pointgcn.engine.streaming import stream_segment
    from pointgcn.errors import InputError
    from pointgcn.io.chunks import ChunkReader
    from pointgcn.viz.palettes import class_colors

    from apps.segment import OutputPlan
    from pointgcn.io.stream_writers import STREAMED_OUT

    if args.drop_invalid:
        raise InputError("--drop-invalid does not stream; leave out --stream/--resume to use it")
    if args.batch < 1:
        raise InputError(f"--batch must be ≥ 1, got {args.batch}")
    if args.min_confidence is not None and not 0 <= args.min_confidence <= 1:
        raise InputError(f"--min-confidence must lie in 0–1, got {args.min_confidence}")
    if args.out.suffix.lower() not in STREAMED_OUT:
        raise InputError(f"--out {args.out}: streaming writes {' '.join(STREAMED_OUT)} a chunk "
                         f"at a time, not {args.out.suffix.lower() or 'this suffix'}")
    plan = OutputPlan(args)
    if args.tile_points < 1000:
        raise InputError(f"--tile-points must be ≥ 1000, got {args.tile_points}")
    reader = ChunkReader(args.input)  # a format it cannot stream fails before the model loads
    if args.labels is not None:
        reader.select_labels(args.labels)
    predictor, cfg = predictor_from_args(args, "segmentation")
    if predictor.task != "segmentation":
        raise InputError(f"--stream labels scenes; this is a {predictor.task} model")
    names = predictor.class_names
    palette = "s3dis" if len(names) == 13 else "generic"
    plan.check_classes(len(names), args.colors or ("input" if reader.has_colors else "class"))
    _preflight(args, reader, cfg, len(names))
    source = str(args.onnx or args.weights or "default")
    key = {"model": source, "input": os.path.realpath(args.input),
           "input_stat": _stat(args.input), "model_stat": _stat(source)}
    truth = reader.has_labels and reader.label_scheme is None
    scored = False
    res = stream_segment(reader, args.out, predictor, SampleSettings.from_config(cfg), key,
                         batch=args.batch, seed=args.seed, resume=args.resume,
                         colorize=lambda pred: class_colors(pred, palette, len(names)),
                         truth=truth, tile_points=args.tile_points, colors=args.colors,
                         classification=plan.classification,
                         min_confidence=args.min_confidence,
                         preview=PREVIEW_POINTS if args.png else 0)
    if res.resumed_at:
        print(f"resumed at tile {res.resumed_at} of {res.tiles}")
    where = ", pred in classification" if plan.classification else ""
    print(f"{res.n} points → {args.out} ({res.tiles} tiles{where})")
    if args.min_confidence is not None:
        print(f"{res.unsure} points below confidence {args.min_confidence:g}: pred -1")
    for name, c in [*zip(names, res.counts), ("(unsure, -1)", res.unsure)]:
        if c:
            print(f"  {name:12s} {c:9d}  {100 * c / res.n:5.1f}%")
    if truth and res.label_max >= len(names):
        print(f"note: the labels go up to {res.label_max}, beyond this model's classes "
              f"0–{len(names) - 1}: another label set, no metrics")
    elif res.confusion is not None and res.confusion.sum():
        cm = ConfusionMatrix(len(names))
        cm.matrix += res.confusion
        print(f"against the file's labels: OA {cm.oa():.4f}  mIoU {cm.miou():.4f}")
        scored = True
    elif reader.has_labels and reader.label_scheme is not None:
        print("note: the file's labels are ASPRS class codes, not this model's classes: "
              "no metrics (--labels classification scores them anyway)")
    if args.png:  # every k-th point, gathered while writing: the cloud is never in memory
        from pointgcn.viz.render import render_png

        kw = dict(labels="truth", compare="pred") if scored else dict(labels="pred")
        drawn = render_png(res.preview, args.png, palette=palette, class_names=names, **kw)
        print(f"preview → {drawn.path} ({drawn.backend}; {len(res.preview):,} of {res.n:,} "
              "points, every k-th)")
    return 0


def _preflight(args, reader, cfg, n_classes: int, sample: int = 200_000) -> None:
    """segment's preflight on every k-th point (≤ `sample`); refuse what it would change, and
    --labels beyond the model's classes (every label read: as in memory, before the work)."""
    import numpy as np

    from apps.source_args import preflight
    from pointgcn.errors import InputError
    from pointgcn.io.cloud import PointCloud
    from pointgcn.models.conventions import conventions_of

    step = max(1, -(-reader.n // sample))
    parts, top = [], -1
    for c in reader.chunks(1 << 20):
        parts.append(c.xyz[(-c.start) % step::step])
        labels = reader.labels_of(c) if args.labels is not None else None
        if labels is not None and labels.size:
            top = max(top, int(labels.max()))
    if top >= n_classes:
        raise InputError(f"--labels: the labels go up to {top}, beyond this model's classes "
                         f"0–{n_classes - 1}: another label set")
    xyz = np.concatenate(parts) if parts else np.zeros((0, 3))
    xyz = xyz[np.isfinite(xyz).all(axis=1)]
    if len(xyz) < 2:
        return  # empty, or NaN everywhere: stream_segment says so
    xyz = xyz - xyz.min(axis=0)  # harmonising looks at shapes, not positions
    colors = np.full((len(xyz), 3), 0.5, np.float32) if reader.has_colors else None
    cloud = PointCloud(xyz.astype(np.float32), colors, source=reader.where)
    pf = preflight(args, cloud, cfg)
    if pf.scale != 1.0 or pf.up_axis != conventions_of(cfg).up_axis:
        raise InputError("--stream labels the cloud as it is, and the preflight would turn or "
                         "scale it; convert the file (z up, metres), or pass --no-harmonise")


def _stat(path: str) -> list[int] | None:
    """Size and modification time of a file, so a resumed run refuses a changed one."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]
