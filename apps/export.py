"""Export a trained model to ONNX, with parity checks against PyTorch.

    pointgcn export CKPT --out model.onnx [--points N] [--quantize] [--opset 17]
                         [--check-data clouds.npy] [--min-agreement 0.99] [--custom-knn]

CKPT is a checkpoint path, a shipped model name, or a config YAML (random weights). The file
has dynamic batch and point count with the dilated kNN inside the graph, passes onnx.checker,
and carries its task/classes/config as metadata (`pointgcn segment --onnx` reads them).
Parity, printed and saved as <out stem>.parity.json: exact numbers on a static-graph copy,
and label agreement with PyTorch at three point counts (PyTorch on --device, onnxruntime on
--provider, default following --device), each beside PyTorch's own agreement when its kNN
scores in float64 (how far a deep dynamic-graph model's labels move on last-bit changes
alone). The model is written when the labels agree ≥ --min-agreement, or when the labels
PyTorch is sure of (softmax margin ≥ 0.2) agree ≥ --min-agreement and the rest stays within 2
points of that float64 reference (the model's own sensitivity, not an export fault); and, per kNN layer, the
share of PyTorch's neighbours onnxruntime picked too. --quantize adds <out stem>.int8.onnx
(dynamic int8) with its label
agreement and latency change. Checks run on procedural clouds of the model's kind (room blocks,
shapes, part shapes; random ones for other kinds), or on --check-data: .npy/.npz features
(B, C, N).

--custom-knn writes each kNN as one custom onnxruntime node that runs pointgcn's eager kNN
(neighbours equal to eager PyTorch's on the same features; no N×N score matrix and no ONNX
TopK, whose cost grows with k·d — measured speed and memory in docs/performance.md); the file
then needs onnxruntime-extensions (`pip install 'pointgcn[ortx]'`) and pointgcn to run. The default file is standard ONNX that any runtime loads.
"""
from __future__ import annotations

from pathlib import Path

from apps.cli import add_device_argument, positive_int, seed_int
from apps.paths import Input, Output
from apps.source_args import add_provider_argument
from pointgcn.tasks import DEFAULT_POINTS

HELP = "export a model to ONNX (dynamic batch and N, kNN in the graph) with a parity report"
SETTINGS = {"overrides": "model_config"}  # the library's model config overrides


def add_arguments(parser):
    parser.add_argument("checkpoint", type=Input(str), help="checkpoint path, shipped model name or config YAML")
    parser.add_argument("--out", type=Output(".onnx"), help="output .onnx (default: CKPT's name with .onnx, here)")
    parser.add_argument("--points", type=int,
                        help="nominal points per cloud (default: the training N, else the "
                             "task's: " + ", ".join(f"{n} for {task}" for task, n in
                                                   DEFAULT_POINTS.items()) + ")")
    parser.add_argument("--batch", type=int, default=2, help="clouds per parity batch")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (≥ 17)")
    parser.add_argument("--quantize", action="store_true", help="also write an int8 copy")
    parser.add_argument("--check-data", type=Input(), help=".npy/.npz features (B, C, N)")
    parser.add_argument("--min-agreement", type=float, default=0.99,
                        help="least share of equal labels PyTorch vs onnxruntime (all, "
                             "or the sure ones: see above)")
    parser.add_argument("--no-parity", action="store_true", help="skip the parity check")
    parser.add_argument("--exporter", choices=["legacy", "dynamo"], default="legacy",
                        help="torch exporter (legacy: faster to export; see docs)")
    parser.add_argument("--threads", type=positive_int, help="onnxruntime threads for the checks")
    parser.add_argument("--custom-knn", action="store_true",
                        help="kNN as one custom onnxruntime-extensions node running "
                             "pointgcn's kNN (needs pointgcn[ortx] to run)")
    add_device_argument(parser)
    add_provider_argument(parser)
    parser.add_argument("--model-config", nargs="*", default=[], metavar="KEY=VALUE",
                        help="model config overrides (e.g. k=9 for official checkpoints)")
    parser.add_argument("--seed", type=seed_int, default=0)


def run(args) -> int:
    from apps.paths import check_derived
    from pointgcn.errors import InputError
    from pointgcn.export import export_onnx
    from pointgcn.export.quantize import int8_path
    from pointgcn.export.serve import open_model

    if args.points is not None and args.points < 1:
        raise InputError(f"--points must be ≥ 1, got {args.points}")
    if args.batch < 1:
        raise InputError(f"--batch must be ≥ 1, got {args.batch}")
    if not 0.0 <= args.min_agreement <= 1.0:
        raise InputError(f"--min-agreement must be in [0, 1], got {args.min_agreement}")
    out = args.out or Path(Path(args.checkpoint).name).with_suffix(".onnx")
    derived = [(out.with_suffix(".parity.json"), "the parity report", ".json")]
    if args.quantize:
        derived.append((int8_path(out), "the int8 copy", ".onnx"))
    if args.out is None:
        derived.append((out, "the default output", ".onnx"))
    written = [out] + [path for path, _, _ in derived]
    for path, what, suffix in derived:  # checked before the export, like --out itself
        check_derived(args, path, what, (suffix,), [p for p in written if p is not path])
    src = open_model(args.checkpoint, overrides=args.model_config, random_weights=True,
                     seed=args.seed)
    if src.module is None:
        raise InputError(f"{args.checkpoint} is already an ONNX model")
    cfg = src.module.cfg
    points = args.points or _training_points(src.run_config, cfg)
    data, data_name = _check_clouds(args, src.run_config, points)
    report = export_onnx(src.module, out, opset=args.opset, points=points, batch=args.batch,
                         parity=not args.no_parity, check_data=data, check_data_name=data_name,
                         min_agreement=args.min_agreement, quantize=args.quantize,
                         run_config=src.run_config, class_names=src.meta.get("class_names"),
                         exporter=args.exporter, threads=args.threads, seed=args.seed,
                         device=args.device, provider=args.provider,
                         temperature=src.meta.get("temperature"), custom_knn=args.custom_knn)
    print(report.summary())
    print(f"report        {report.report_path}")
    return 0


def _training_points(run_config: dict, model_cfg: dict) -> int:
    n = (run_config.get("data") or {}).get("n_points")
    return int(n) if n else DEFAULT_POINTS[model_cfg["task"]]


def _check_clouds(args, run_config: dict, points: int):
    """(clouds, their description) for the parity check and the int8 comparison: --check-data,
    else procedural clouds of the model's kind, else (None, "random"): noise."""
    from pointgcn.export.parity import check_batch, load_check_data

    model = run_config["model"]
    if args.check_data:
        return load_check_data(args.check_data, model["in_channels"]), "given"
    if args.no_parity and not args.quantize:
        return None, None
    from pointgcn.data.synthetic.check_clouds import synthetic_clouds  # needs trimesh

    drawn = synthetic_clouds(run_config, check_batch(model.get("task"), args.batch), points,
                             args.seed)
    return drawn or (None, "random")
