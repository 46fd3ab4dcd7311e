"""Benchmark eager PyTorch against onnxruntime, or pick a model under a latency budget.

    pointgcn bench MODEL… [--points N] [--batch B] [--runs R] [--threads T]
                   [--json OUT] [--md OUT] [--model-config key=value …]
    pointgcn bench --budget-ms X [MODEL…] [--manifest M] [--points N] [--task T]

MODEL: a checkpoint, a shipped model name, a config YAML (random weights) or an .onnx file;
with --model-config alone a model is built from those keys (e.g. the S3DIS ResGCN-28:
`--model-config n_blocks=28 channels=64 k=16 in_channels=9 n_classes=13`). PyTorch models
are exported to a temp dir and both runtimes run the same clouds, interleaved after warm-up:
mean / p50 / p95 latency, points/s, peak inference memory (a subprocess per runtime) and the
onnxruntime speed-up, as text, JSON and a markdown table with the environment line. Where
onnxruntime-extensions is installed (`pointgcn[ortx]`) the custom-kNN export (`pointgcn export
--custom-knn`) runs in the same interleaved loop as a third runtime (--custom-knn on/off).

--budget-ms: measure every manifest model (default: the shipped weights) and every MODEL
(checkpoint, shipped name or .onnx — trained weights only, so no YAML or --model-config) on
--device, the device it will serve on (cached per device, runtime, N and batch), and pick the
most accurate one whose p95 fits; exit 2 when none does. On a GPU without onnxruntime-gpu,
checkpoints are measured (and served) eagerly on the GPU.

--device (default auto: CUDA when available) runs eager PyTorch there and onnxruntime on
--provider (default: following --device).
"""
from __future__ import annotations

import json
from pathlib import Path

from apps.cli import add_device_argument, positive_int
from apps.paths import Input, Output
from apps.source_args import add_provider_argument

HELP = "eager vs onnxruntime latency/memory benchmark, or latency-budget model selection"
SETTINGS = {"overrides": "model_config"}  # the library's model config overrides


def add_arguments(parser):
    parser.add_argument("models", nargs="*", metavar="MODEL", type=Input(str),
                        help="checkpoint, shipped name, config YAML or .onnx")
    parser.add_argument("--points", type=int, default=4096, help="points per cloud")
    parser.add_argument("--batch", type=int, default=1, help="clouds per run")
    parser.add_argument("--runs", type=int, default=10, help="timed runs per runtime")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs first")
    parser.add_argument("--threads", type=positive_int, help="threads for both runtimes")
    parser.add_argument("--json", type=Output(".json"), help="write results as JSON")
    parser.add_argument("--md", type=Output(".md"), help="write a markdown table")
    parser.add_argument("--model-config", nargs="*", default=[], metavar="KEY=VALUE",
                        help="model config keys/overrides (alone: build that model)")
    parser.add_argument("--no-memory", action="store_true", help="skip peak-memory probes")
    parser.add_argument("--optimization", choices=["disable", "basic", "extended", "all"],
                        default="all", help="onnxruntime graph optimisation level")
    parser.add_argument("--spin", choices=["default", "on", "off"], default="default",
                        help="onnxruntime thread spinning between runs")
    parser.add_argument("--custom-knn", choices=["auto", "on", "off"], default="auto",
                        help="also time the custom-kNN export (auto: when "
                             "onnxruntime-extensions is installed)")
    parser.add_argument("--budget-ms", type=float, help="pick a model whose p95 fits this")
    parser.add_argument("--manifest", type=Input(), help="candidates for --budget-ms "
                        "(default: the shipped weights manifest)")
    parser.add_argument("--runtime", choices=["onnx", "torch"], default="onnx",
                        help="runtime measured for --budget-ms")
    parser.add_argument("--task", help="only candidates of this task (--budget-ms)")
    add_device_argument(parser)
    add_provider_argument(parser)


def run(args) -> int:
    from pointgcn.errors import InputError

    for name in ("points", "batch", "runs"):
        if getattr(args, name) < 1:
            raise InputError(f"--{name} must be ≥ 1, got {getattr(args, name)}")
    if args.warmup < 0:
        raise InputError(f"--warmup must be ≥ 0, got {args.warmup}")
    for out, suffix in ((args.json, ".json"), (args.md, ".md")):
        if out is not None and out.suffix != suffix:
            raise InputError(f"{out}: expected a {suffix} file")
    if args.budget_ms is not None:
        return _budget(args)
    return _bench(args)


def _bench(args) -> int:
    from pointgcn.errors import InputError
    from pointgcn.export.benchmark import bench_source, format_row, markdown_table
    from pointgcn.export.serve import open_model
    from pointgcn.export.timing import environment, environment_line

    specs = args.models or ([None] if args.model_config else [])
    if not specs:
        raise InputError("give at least one MODEL, or --model-config key=value …")
    sources = [open_model(s, overrides=args.model_config, random_weights=True,
                          label=None if s else "model-config")
               for s in specs]  # all inputs checked first
    env = environment(args.threads, args.device or "auto")
    print(environment_line(env))
    rows = []
    for src in sources:
        row = bench_source(src, points=args.points, batch=args.batch, runs=args.runs,
                           warmup=args.warmup, threads=args.threads,
                           memory=not args.no_memory, optimization=args.optimization,
                           spin={"default": None, "on": True, "off": False}[args.spin],
                           device=args.device or "auto", provider=args.provider,
                           custom_knn={"auto": None, "on": True, "off": False}[args.custom_knn])
        print(format_row(row))
        rows.append(row)
    _write(args.json, json.dumps({"environment": env, "results": rows}, indent=2) + "\n")
    _write(args.md, markdown_table(rows, env) + "\n")
    return 0


def _budget(args) -> int:
    from pointgcn.errors import InputError
    from pointgcn.export.budget import Candidate, load_candidates, select_model
    from pointgcn.export.serve import weights_file
    from pointgcn.models.weights import MANIFEST, find_entry, weights_dir

    if args.model_config:
        raise InputError("--model-config builds untrained models; --budget-ms picks among "
                         "trained ones (give checkpoints, shipped names or .onnx files)")
    paths = [weights_file(m) for m in args.models]  # every MODEL checked before measuring
    shipped = weights_dir() / MANIFEST
    if args.manifest is not None:
        candidates = load_candidates(args.manifest)
    else:
        candidates = load_candidates(shipped) if shipped.is_file() or not paths else []
    known = {c.path.resolve() for c in candidates}
    for spec, path in zip(args.models, paths):
        if path.resolve() in known:
            continue
        entry = None if Path(spec).is_file() else find_entry(spec)  # a shipped name
        candidates.append(Candidate.from_entry(entry, weights_dir()) if entry
                          else Candidate(name=Path(spec).stem, path=path))
    sel = select_model(candidates, args.budget_ms, points=args.points, batch=args.batch,
                       runtime=args.runtime, task=args.task, threads=args.threads,
                       runs=args.runs, device=args.device or "auto")
    print(sel.reason)
    _write(args.json, json.dumps(sel.to_dict(), indent=2) + "\n")
    return 0


def _write(path: Path | None, text: str) -> None:
    if path is None:
        return
    from pointgcn.io.atomic import atomic_path
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    print(f"wrote {path}")
