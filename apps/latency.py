"""Latency data and the LC-NAS latency regressor (LatReg).

  pointgcn latency collect --out lat.jsonl --n 200 [--runtime torch|onnxruntime]
                           [--points 1024 --width 32 --cells 2 --k 9]
                           [--sampling uniform|stratified|sparse]
      sample cell architectures (each of the 9 edges one of the 10 ops), build each network at
      that size, time it (1 thread, warm-up, interleaved rounds, median) and append one row per
      architecture to the file (it grows across calls; rows of other sizes may share it)
  pointgcn latency collect --device cuda …
      the same on a GPU: CUDA-event timing after warm-up; rows keyed by the GPU's name and
      driver (default --device auto: the GPU when there is one)
  pointgcn latency fit lat.jsonl [more.jsonl …] --out latreg.pt [--png fit.png] [--json m.json]
      fit the 3-layer MLP on a random split; print and write MAE / MAPE on the held-out rows
      and the predicted-vs-measured plot of those rows
  pointgcn latency predict latreg.pt GENOTYPE.yaml [--measure]
      the regressor's latency for a genotype (and optionally its measured latency) at the
      genotype's own width/cells/k, or at --points/--width/--cells/--k when given; a size the
      regressor holds fixed must match (exit 2 otherwise)

`none` edges are absent from the measured network; a node without edges outputs zeros.
"""
from __future__ import annotations

import json
from pathlib import Path

from apps.cli import add_device_argument, positive_int, seed_int
from apps.paths import Input, Output

HELP = "collect on-device latencies of sampled cells; fit / query the latency regressor"


def add_arguments(parser):
    sub = parser.add_subparsers(dest="action", metavar="<action>", required=True)
    c = sub.add_parser("collect", help="measure sampled architectures, append rows to a jsonl")
    c.add_argument("--out", type=Output(".jsonl", append=True), required=True, help="jsonl file (appended to)")
    c.add_argument("--n", type=int, default=200, help="architectures to measure (default 200)")
    c.add_argument("--runtime", choices=("torch", "onnxruntime"), default="torch")
    c.add_argument("--points", type=int, default=1024)
    c.add_argument("--width", type=int, default=32, help="cell channels C")
    c.add_argument("--cells", type=int, default=2)
    c.add_argument("--k", type=int, default=9)
    c.add_argument("--in-channels", type=int, default=3)
    c.add_argument("--n-classes", type=int, default=40)
    c.add_argument("--task", choices=("classification", "segmentation", "part_segmentation"),
                   default="classification")
    c.add_argument("--batch", type=int, default=1)
    c.add_argument("--stem-multiplier", type=int, default=3)
    c.add_argument("--fusion", type=int, default=1024, help="fusion channels of the head")
    c.add_argument("--prediction", default="512,256",
                   help="widths of the prediction MLP, comma-separated (default 512,256)")
    c.add_argument("--sampling", choices=("uniform", "stratified", "sparse"), default="uniform",
                   help="uniform over the 10 ops per edge (default); stratified: the number of "
                        "graph ops per cell uniform in 0…9; sparse: 0–2 graph ops (the fast "
                        "cells tight latency targets need)")
    c.add_argument("--threads", type=positive_int, default=1, help="intra-op threads (default 1)")
    c.add_argument("--warmup", type=int, default=3, help="warm-up runs per architecture")
    c.add_argument("--rounds", type=int, default=20, help="timed runs per architecture")
    c.add_argument("--group", type=int, default=8, help="architectures timed interleaved")
    c.add_argument("--seed", type=seed_int, help="sampling seed (default: random)")
    add_device_argument(c)
    c.add_argument("--no-progress", action="store_true")

    f = sub.add_parser("fit", help="fit the latency regressor on collected rows")
    f.add_argument("data", type=Input(), nargs="+", help="jsonl file(s) from collect")
    f.add_argument("--out", type=Output(".pt"), required=True, help="regressor file (.pt)")
    f.add_argument("--png", type=Output(".png"), help="predicted-vs-measured plot of held-out rows")
    f.add_argument("--json", type=Output(".json"), help="metrics JSON (default: OUT with .json)")
    f.add_argument("--holdout", type=float, default=0.2, help="held-out fraction (0.2)")
    f.add_argument("--hidden", type=int, default=64, help="hidden width of the MLP (64)")
    f.add_argument("--steps", type=int, default=2000, help="full-batch Adam steps (2000)")
    f.add_argument("--seed", type=seed_int, default=0)
    f.add_argument("--no-normalise", action="store_true",
                   help="fit raw medians (ignore the rows' reference timings)")

    q = sub.add_parser("predict", help="predicted (and measured) latency of a genotype")
    q.add_argument("latreg", type=Input())
    q.add_argument("genotype", type=Input())
    q.add_argument("--measure", action="store_true",
                   help="also build and time it here (on the regressor's device)")
    for key in ("points", "width", "cells", "k"):
        q.add_argument(f"--{key}", type=int, help="needed when the regressor varies it")


def run(args) -> int:
    return {"collect": _collect, "fit": _fit, "predict": _predict}[args.action](args)


def _collect(args) -> int:
    from pointgcn.nas.latency import collect, resolve_config

    from pointgcn.errors import InputError

    try:
        prediction = [int(v) for v in args.prediction.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"--prediction must be comma-separated widths, got {args.prediction!r}"
                         ) from None
    config = resolve_config(dict(points=args.points, width=args.width, cells=args.cells, k=args.k,
                                 in_channels=args.in_channels, n_classes=args.n_classes,
                                 task=args.task, batch=args.batch,
                                 stem_multiplier=args.stem_multiplier,
                                 fusion_channels=args.fusion, prediction=prediction))
    written = collect(args.out, args.n, config, runtime=args.runtime, threads=args.threads,
                      warmup=args.warmup, rounds=args.rounds, group=args.group, seed=args.seed,
                      progress=not args.no_progress, sampling=args.sampling,
                      device=args.device)
    print(f"appended {written} rows to {args.out}")
    return 0


def _fit(args) -> int:
    from pointgcn.errors import InputError
    from pointgcn.io.atomic import atomic_path
    from pointgcn.nas.latency_file import read_rows
    from pointgcn.nas.latreg import fit, save_latreg
    from pointgcn.viz.plots import plot_latency_fit

    from apps.paths import check_derived

    json_path = args.json or args.out.with_suffix(".json")
    if args.json is None:  # derived here, so checked here; --json and --out by apps/cli.py
        check_derived(args, json_path, "the metrics JSON", (".json",))
    rows = [r for path in args.data for r in read_rows(path)]
    if args.hidden < 1 or args.steps < 1:
        raise InputError("--hidden and --steps must be ≥ 1")
    model, report = fit(rows, holdout=args.holdout, seed=args.seed, hidden=args.hidden,
                        steps=args.steps, normalise=not args.no_normalise)
    save_latreg(model, args.out)
    with atomic_path(json_path) as tmp:
        tmp.write_text(json.dumps({**report, "holdout_points": model.holdout}, indent=2))
    h = report["holdout"]
    print(f"rows {report['n_rows']} (train {report['n_train']}, held out {report['n_holdout']})")
    print(f"held-out MAE {h['mae_ms']:.3f} ms  MAPE {h['mape']:.2f} %  (max {h['max_ape']:.1f} %;"
          f" predicting the mean: MAPE {report['baseline_holdout_mape']:.2f} %)")
    print(f"held-out mean measured {h['mean_measured_ms']:.2f} ms, predicted "
          f"{h['mean_predicted_ms']:.2f} ms; train MAPE {report['train']['mape']:.2f} %")
    written = [str(args.out), str(json_path)]
    if args.png:
        plot_latency_fit(model.holdout["measured_ms"], model.holdout["predicted_ms"], args.png)
        written.append(str(args.png))
    print("written: " + ", ".join(written))
    return 0


def _predict(args) -> int:
    import torch

    from pointgcn.errors import InputError
    from pointgcn.nas.genotype import load_genotype
    from pointgcn.nas.latency import check_same_gpu, measure, resolve_config
    from pointgcn.nas.latreg import load_latreg, normalise_ms

    latreg = load_latreg(args.latreg)
    genotype = load_genotype(args.genotype)
    config = dict(latreg.meta.get("config") or {})
    own = {"width": genotype.channels, "cells": genotype.cells, "k": genotype.k}
    for key in ("points", "width", "cells", "k"):
        given = getattr(args, key)
        value, source = (given, f"--{key}") if given is not None else \
            (own.get(key), f"the genotype's {'channels' if key == 'width' else key}")
        if value is None:
            continue
        if key in config and config[key] != value:
            raise InputError(f"{source} is {value}, but the regressor was fitted at {key}="
                             f"{config[key]} only (give --{key} {config[key]} to price the cell "
                             "at that size)")
        config[key] = value
    predicted = float(latreg(torch.as_tensor(genotype.encoding()), latreg.extras_for(config)))
    print(f"{genotype.describe()}\npredicted {predicted:.2f} ms at "
          + ", ".join(f"{k}={config[k]}" for k in ("points", "width", "cells", "k") if k in config))
    if args.measure:
        stats = measure(genotype, resolve_config(config),
                        runtime=latreg.meta.get("runtime") or "torch",
                        device=check_same_gpu(latreg.meta.get("device")))
        value = normalise_ms(stats["median"], stats["reference_ms"],
                             latreg.meta.get("reference_ms"))
        print(f"measured {value:.2f} ms (raw median {stats['median']:.2f} ms)")
    return 0
