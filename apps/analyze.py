"""Over-smoothing diagnostics per layer of a trained model on a data split.

  pointgcn analyze runs/res28/checkpoints/best.pt --split val --png res28.png --json res28.json
  pointgcn analyze A.pt B.pt --png compare.png          # one line per model in the plot
  pointgcn analyze best.pt data.root=elsewhere        # the data set the run trained on, moved

Per layer (the head, then every block; a NAS model's stem and cells): group distance ratio
and instance information gain (Zhou et al., NeurIPS 2020, as the DeepGCN papers quote them),
Dirichlet energy over the xyz kNN graph and effective rank (pointgcn.engine.diagnostics).
Samples come from the checkpoint's own data set (key=value overrides change it), drawn with a
fixed seed; segmentation pools `--max-points` points over `--samples` blocks, classification
one max-pooled vector per shape.
"""
from __future__ import annotations

from pathlib import Path

from apps.cli import positive_int, seed_int
from apps.paths import Input, Output

HELP = "over-smoothing diagnostics per layer (group distance ratio, information gain, …)"


def add_arguments(p):
    p.add_argument("ckpt", nargs="+", type=Input(str),
                   help="checkpoint(s) or shipped model name(s); `key=value` overrides after")
    p.add_argument("--split", choices=("val", "test", "train"), default="val",
                   help="data split to analyze (default val; never report train as held out)")
    p.add_argument("--samples", type=positive_int, default=16,
                   help="blocks or shapes drawn from the split (classification: use ≥ 40)")
    p.add_argument("--max-points", type=positive_int, default=2048,
                   help="points pooled over the samples (segmentation)")
    p.add_argument("--seed", type=seed_int, default=0, help="sample drawing seed")
    p.add_argument("--json", type=Output(".json"), help="write every layer's numbers here")
    p.add_argument("--png", type=Output(".png"), help="plot the diagnostics per layer")
    p.add_argument("--threads", type=positive_int)


def run(args) -> int:
    import json

    import torch

    from pointgcn.config import apply_overrides
    from pointgcn.data.build import build_datasets
    from pointgcn.engine.analyze import analyze, format_table
    from pointgcn.errors import InputError
    from pointgcn.export.serve import open_model
    from pointgcn.io.atomic import atomic_path
    from pointgcn.viz.plots import plot_layer_diagnostics

    overrides = [x for x in args.ckpt if "=" in x and not Path(x).exists()]
    ckpts = [x for x in args.ckpt if x not in overrides]
    if not ckpts:
        raise InputError("give a checkpoint to analyze")
    if args.threads:
        torch.set_num_threads(args.threads)
    runs = {}
    for ckpt in ckpts:
        model = open_model(ckpt, device="cpu")
        if model.module is None:
            raise InputError(f"{ckpt}: analyze needs a PyTorch checkpoint, not an .onnx file")
        cfg = model.run_config
        if not isinstance(cfg.get("data"), dict) or not cfg["data"].get("dataset"):
            raise InputError(f"{ckpt} does not record the data set it was trained on")
        cfg = apply_overrides(cfg, overrides)
        data = build_datasets(cfg, (args.split,))
        split = getattr(data, args.split)
        label = model.label if model.label not in runs else f"{model.label}-{len(runs)}"
        reports = analyze(model.module, split, task=data.task, max_samples=args.samples,
                          max_points=args.max_points, k=cfg["model"].get("k", 16),
                          seed=args.seed)
        print(f"{label} on the {args.split} split of {cfg['data']['dataset']} "
              f"({min(args.samples, len(split))} samples):")
        print(format_table(reports))
        runs[label] = [r.as_dict() for r in reports]
    if args.json:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps({"split": args.split, "seed": args.seed,
                                       "models": runs}, indent=2))
    if args.png:
        print(f"plot → {plot_layer_diagnostics(runs, args.png)}")
    return 0
