"""Classify shapes (clouds or meshes) with a classification model.

  pointgcn classify chair.off                        # the default shipped classifier
  pointgcn classify scans/ --weights modelnet10 --csv > classes.csv
  pointgcn classify 'shapes/**/*.ply' --json         # a quoted glob, expanded here

Many files, folders (every readable file below them) and globs are classified with one model
load, one row per file; a file that cannot be read gets an `error:` row (stderr) and the run
ends with exit code 2 after the others. Meshes are sampled on their surface (said so for a
single file); each shape is normalised to the unit sphere and the model sees `votes` random
subsets of its training point count, whose probabilities are averaged. The probabilities are
calibrated (the model's logits divided by its temperature); each row gives the top one as
`confidence` and the entropy (nats) of the averaged probabilities, and `--min-confidence X`
reports a shape below X as class "uncertain" (index −1).
"""
from __future__ import annotations

import json
import sys

from apps.cli import flag_names, positive_int, seed_int
from apps.paths import Input, Output

HELP = "classify clouds or meshes (files, folders, globs); ranked classes per file"
SETTINGS = {"harmonise": "no_harmonise"}  # harmonise(enabled=False) is --no-harmonise
UNCERTAIN = "uncertain"


def add_arguments(p):
    p.add_argument("input", nargs="+", type=Input(),
                   help="cloud or mesh files, folders (searched recursively) or quoted globs")
    from apps.source_args import add_harmonise_arguments, add_source_arguments
    add_source_arguments(p)
    add_harmonise_arguments(p)
    p.add_argument("--top", type=int, default=5, help="how many classes to list per file")
    p.add_argument("--votes", type=int, default=3, help="random subsets averaged")
    p.add_argument("--mesh-points", type=int, default=4096,
                   help="surface samples for meshes (default 4096, at most 1,000,000)")
    table = p.add_mutually_exclusive_group()
    table.add_argument("--json", action="store_true", help="print a JSON list, one entry per file")
    table.add_argument("--csv", action="store_true",
                       help="print CSV: file, class and probability for each of --top, "
                            "then prediction (or 'uncertain'), confidence, entropy")
    p.add_argument("--min-confidence", type=float, metavar="X",
                   help="call a shape 'uncertain' (index −1) when its calibrated top "
                        "probability is below X (0 to 1)")
    p.add_argument("--png", type=Output(".png"), help="also render a preview PNG (one input)")
    p.add_argument("--drop-invalid", action="store_true")
    p.add_argument("--threads", type=positive_int)
    p.add_argument("--seed", type=seed_int, default=0)


def run(args) -> int:
    from apps.paths import expand_inputs
    from apps.source_args import predictor_from_args
    from pointgcn.data.build import SampleSettings
    from pointgcn.errors import InputError
    from pointgcn.io import SUPPORTED
    from pointgcn.io.mesh import MAX_SAMPLES

    if args.top < 1 or args.votes < 1 or not 1 <= args.mesh_points <= MAX_SAMPLES:
        raise InputError(f"--top and --votes must be ≥ 1, --mesh-points 1 to {MAX_SAMPLES:,}")
    if args.min_confidence is not None and not 0 <= args.min_confidence <= 1:
        raise InputError(f"--min-confidence must be between 0 and 1, got {args.min_confidence}")
    files = expand_inputs(args.input, SUPPORTED)
    if args.png and len(files) > 1:
        raise InputError(f"--png renders one shape; {len(files)} files were given")
    # one file: read before the model loads, so its errors come first (and it is read once)
    preread = {files[0]: _read(files[0], args)} if len(files) == 1 else {}
    predictor, cfg = predictor_from_args(args, "classification")
    if predictor.task != "classification":
        raise InputError(f"this is a {predictor.task} model; use `pointgcn segment`")
    settings = SampleSettings.from_config(cfg)
    rows, failed = [], 0
    progress = _progress(files)
    for path in progress:
        try:
            read = preread.pop(path, None) or _read(path, args)
            rows.append(_classify(path, read, args, predictor, settings, cfg,
                                  single=len(files) == 1))
        except InputError as e:
            if len(files) == 1:
                raise
            failed += 1
            progress.write(f"error: {e.renamed(flag_names(args))}", file=sys.stderr)
            continue
        if not (args.json or args.csv):
            _print_text(rows[-1], single=len(files) == 1, write=progress.write)
    if args.json:
        print(json.dumps(rows, indent=2))
    elif args.csv:
        _print_csv(rows, args.top)
    if failed:
        raise InputError(f"{failed} of {len(files)} files could not be classified (see above)")
    return 0


def _read(path, args):
    from pointgcn.io import ReadReport, read_points

    report = ReadReport()
    cloud = read_points(path, n_points=args.mesh_points, drop_invalid=args.drop_invalid,
                        seed=args.seed, report=report)
    return cloud, report


def _classify(path, read, args, predictor, settings, cfg, single: bool) -> dict:
    import numpy as np

    from apps.source_args import preflight
    from pointgcn.engine.confidence import confidence_and_entropy, mark_uncertain
    from pointgcn.engine.inference import classify_cloud, mean_probabilities, vote_logits

    cloud, report = read
    talk = single and not (args.json or args.csv)
    if report.sampled and talk:
        print(f"note: a mesh: classifying {len(cloud)} points sampled on its {report.n_faces} "
              "faces")

    calibrated = {}

    def probabilities(seen):
        """The network's own probabilities (temperature 1: harmonise's auto-up margin was
        measured on them), keeping the calibrated ones of the same votes for the answer."""
        logits = vote_logits(seen, predictor, settings, votes=args.votes, seed=args.seed)
        own = mean_probabilities(logits * getattr(predictor, "temperature", 1.0))
        calibrated[id(own)] = mean_probabilities(logits)
        return own

    # auto up runs the model on each axis's view (vote_logits checks the points first);
    # the chosen view's probabilities are the answer, not run again
    pf = preflight(args, cloud, cfg, probabilities, show=talk)
    chosen = pf.views.get(pf.up_axis)
    probs = calibrated[id(chosen)] if chosen is not None else \
        classify_cloud(pf.cloud, predictor, settings, votes=args.votes, seed=args.seed)
    order = np.argsort(-probs)[:args.top]
    ranking = [{"class": predictor.class_names[i], "index": int(i),
                "probability": float(probs[i])} for i in order]
    confidence, entropy = (float(v) for v in confidence_and_entropy(probs))
    index = int(mark_uncertain(order[0], confidence, args.min_confidence))
    verdict = {"class": predictor.class_names[index] if index >= 0 else UNCERTAIN,
               "index": index, "confidence": confidence, "entropy": entropy}
    if args.png:
        from pointgcn.viz.render import render_png
        top = ranking[0]
        res = render_png(cloud, args.png, title=f"{top['class']} ({top['probability']:.2f})")
        if not (args.json or args.csv):
            print(f"preview → {res.path} ({res.backend})")
    return {"input": str(path), **verdict, "up_axis": pf.up_axis, "ranking": ranking}


def _progress(files):
    """A progress bar on stderr for many files (rows go through its `write`)."""
    from tqdm import tqdm

    return tqdm(files, desc="shapes", unit="file", disable=len(files) < 20 or None,
                file=sys.stderr)


def _print_text(row: dict, single: bool, write) -> None:
    trust = f"confidence {row['confidence']:.4f}, entropy {row['entropy']:.4f} nats"
    if single:
        for r in row["ranking"]:
            print(f"{r['class']:16s} {r['probability']:.4f}")
        print(f"{UNCERTAIN} ({trust})" if row["index"] < 0 else trust)
        return
    ranked = "  ".join(f"{r['class']} {r['probability']:.4f}" for r in row["ranking"])
    write(f"{row['input']}  {UNCERTAIN + '  ' if row['index'] < 0 else ''}{ranked}  ({trust})")


def _print_csv(rows: list[dict], top: int) -> None:
    import csv

    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(["file"] + [f"{key}_{i}" for i in range(1, top + 1)
                                for key in ("class", "probability")]
                    + ["prediction", "confidence", "entropy"])
    for row in rows:
        ranked = [v for r in row["ranking"] for v in (r["class"], f"{r['probability']:.6f}")]
        ranked += [""] * (2 * top - len(ranked))  # fewer classes than --top
        writer.writerow([row["input"]] + ranked + [row["class"], f"{row['confidence']:.6f}",
                                                   f"{row['entropy']:.6f}"])
