"""Classify a shape (a cloud or a mesh) with a classification model.

  pointgcn classify chair.off --weights synth-shapes --top 5

Meshes are sampled on their surface; the shape is normalised to the unit sphere and the model
sees `votes` random subsets of its training point count, whose probabilities are averaged.
"""
from __future__ import annotations

import json
from pathlib import Path

from apps.cli import positive_int
from apps.paths import Input, Output

HELP = "classify a cloud or mesh; prints ranked classes with probabilities"


def add_arguments(p):
    p.add_argument("input", type=Input(), help="cloud or mesh file")
    from apps.source_args import add_source_arguments
    add_source_arguments(p)
    p.add_argument("--top", type=int, default=5, help="how many classes to list")
    p.add_argument("--votes", type=int, default=3, help="random subsets averaged")
    p.add_argument("--mesh-points", type=int, default=4096,
                   help="surface samples for meshes (default 4096, at most 1,000,000)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--png", type=Output(".png"), help="also render a preview PNG")
    p.add_argument("--drop-invalid", action="store_true")
    p.add_argument("--threads", type=positive_int)
    p.add_argument("--seed", type=int, default=0)


def run(args) -> int:
    import numpy as np

    from pointgcn.engine.inference import Settings, classify_cloud
    from pointgcn.export.serve import predictor_from_args
    from pointgcn.errors import InputError
    from pointgcn.io import ReadReport, read_points

    from pointgcn.io.mesh import MAX_SAMPLES

    if args.top < 1 or args.votes < 1 or not 1 <= args.mesh_points <= MAX_SAMPLES:
        raise InputError(f"--top and --votes must be ≥ 1, --mesh-points 1 to {MAX_SAMPLES:,}")
    report = ReadReport()
    cloud = read_points(args.input, n_points=args.mesh_points, drop_invalid=args.drop_invalid,
                        seed=args.seed, report=report)
    if report.sampled and not args.json:
        print(f"note: a mesh: classifying {len(cloud)} points sampled on its {report.n_faces} "
              "faces")
    predictor, cfg = predictor_from_args(args, "classification", 1024)
    if predictor.task != "classification":
        raise InputError(f"this is a {predictor.task} model; use `pointgcn segment`")
    probs = classify_cloud(cloud, predictor, Settings.from_config(cfg), votes=args.votes,
                           seed=args.seed)
    order = np.argsort(-probs)[:args.top]
    ranked = [{"class": predictor.class_names[i], "index": int(i), "probability": float(probs[i])}
              for i in order]
    if args.json:
        print(json.dumps({"input": str(args.input), "ranking": ranked}, indent=2))
    else:
        for r in ranked:
            print(f"{r['class']:16s} {r['probability']:.4f}")
    if args.png:
        from pointgcn.viz.render import render_png
        res = render_png(cloud, args.png, title=f"{ranked[0]['class']} ({ranked[0]['probability']:.2f})")
        if not args.json:
            print(f"preview → {res.path} ({res.backend})")
    return 0
