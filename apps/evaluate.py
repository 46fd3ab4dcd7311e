"""Evaluate a checkpoint on the test split with the data set's official protocol.

  pointgcn eval configs/synth_rooms_tiny.yaml --ckpt runs/x/checkpoints/best.pt
  pointgcn eval --ckpt runs/x/checkpoints/best.pt            # the data set the run trained on
  pointgcn eval data.root=elsewhere --ckpt runs/x/checkpoints/best.pt
  pointgcn eval CONFIG --ckpt A1.pt A2.pt A3.pt A4.pt A5.pt A6.pt --six-fold   # S3DIS 6-fold

S3DIS is scored at full resolution (every point of every test-area room, block voting) and,
labelled as such, per block (the DeepGCN papers' figure). Writes JSON with --json.
"""
from __future__ import annotations

import json
from pathlib import Path

from apps.cli import add_device_argument, positive_int
from apps.paths import Input, Output
from apps.source_args import add_provider_argument

HELP = "evaluate a checkpoint on the test split (S3DIS full resolution, ModelNet40, PartNet)"
SETTINGS = {"full_resolution": "no_rooms"}  # evaluate(full_resolution=False) is --no-rooms


def add_arguments(p):
    p.add_argument("config", nargs="?", type=Input(str),
                   help="run config (YAML) naming the data set (default: the checkpoint's "
                        "own); `key=value` after it")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. data.root=…")
    p.add_argument("--ckpt", nargs="+", required=True, type=Input(str),
                   help="checkpoint path(s), shipped model name(s) or .onnx file(s)")
    p.add_argument("--six-fold", action="store_true",
                   help="S3DIS: six checkpoints, the i-th tested on Area_i; sums the matrices")
    p.add_argument("--no-rooms", action="store_true", help="S3DIS: skip full-resolution rooms")
    p.add_argument("--batch", type=int, default=8, help="blocks or shapes per forward pass")
    add_device_argument(p)
    add_provider_argument(p)
    p.add_argument("--threads", type=positive_int)
    p.add_argument("--json", type=Output(".json"), help="write the metrics here")
    p.add_argument("--no-progress", action="store_true")


def run(args) -> int:
    from pointgcn.config import load_config
    from pointgcn.engine.evaluator import evaluate, six_fold
    from pointgcn.export.serve import open_model
    from pointgcn.errors import InputError
    from pointgcn.io.atomic import atomic_path

    # argparse puts a first key=value in `config` and later ones in --ckpt's list
    items = [x for x in (args.config, *args.overrides, *args.ckpt) if x]
    overrides = [x for x in items if "=" in x and not Path(x).exists()]
    config = args.config if args.config and args.config not in overrides else None
    ckpts = [x for x in args.ckpt if x not in overrides]
    cfg = load_config(config, overrides) if config else None
    if args.six_fold and len(ckpts) != 6:
        raise InputError(f"--six-fold needs 6 checkpoints (Area_1 … Area_6), got {len(ckpts)}")
    if not args.six_fold and len(ckpts) != 1:
        raise InputError("give one --ckpt (or six with --six-fold)")
    results = []
    for i, ckpt in enumerate(ckpts):
        model = open_model(ckpt, device=args.device, provider=args.provider,
                           threads=args.threads)
        predictor, ckpt_cfg = model.predictor(), model.run_config
        base = cfg or _checkpoint_config(ckpt, ckpt_cfg, overrides)
        run_cfg = {**base, "model": ckpt_cfg.get("model", {})}
        _note_preprocessing_changes(ckpt_cfg.get("data", {}), base.get("data", {}), ckpt_cfg,
                                    base)
        if args.six_fold:
            run_cfg["data"] = {**base["data"], "test_area": i + 1}
        results.append(evaluate(run_cfg, predictor, batch=args.batch,
                                full_resolution=not args.no_rooms,
                                progress=not args.no_progress))
    out = six_fold(results) if args.six_fold else results[0]
    print(format_report(out))
    if args.json:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(out, indent=2))
    return 0


def _checkpoint_config(ckpt: str, ckpt_cfg: dict, overrides: list[str]) -> dict:
    """The run config stored with the model (data root and sampling as trained), overridden."""
    from pointgcn.config import apply_overrides
    from pointgcn.errors import InputError

    if not isinstance(ckpt_cfg.get("data"), dict) or not ckpt_cfg["data"].get("dataset"):
        raise InputError(f"{ckpt} does not record the data set it was trained on; give a "
                         "CONFIG naming one")
    return apply_overrides(ckpt_cfg, overrides)


def _note_preprocessing_changes(trained: dict, now: dict, model_cfg: dict | None = None,
                                eval_cfg: dict | None = None) -> None:
    """Say when the evaluation samples differently from how the model was trained, and when
    the data set's up axis (its layout's, or data.up_axis) is not the model's (the preflight
    of `eval`: a protocol's data are not turned, so this is said, not fixed)."""
    from pointgcn.data.build import DATA_DEFAULTS
    from pointgcn.models.conventions import conventions_of, from_config

    for key in ("n_points", "block", "stride", "position_norm", "normals"):
        a, b = trained.get(key, DATA_DEFAULTS.get(key)), now.get(key, DATA_DEFAULTS.get(key))
        if trained and a != b:
            print(f"note: data.{key} is {b!r} here but the model was trained with {a!r}")
    if model_cfg is not None and eval_cfg is not None:
        model_up = conventions_of(model_cfg).up_axis
        data_up = from_config({**eval_cfg, "model": model_cfg.get("model", {})}).up_axis
        if model_up != data_up:
            print(f"note: this data set is {data_up} up but the model was trained {model_up} "
                  "up; its scores will suffer (set data.up_axis if the data set's default is "
                  "wrong)")


def format_report(out: dict) -> str:
    lines = []
    for key, title in (("full_resolution", "full resolution (every point)"),
                       ("per_block", "per block (DeepGCN papers' figure)"),
                       ("shapes", "test shapes")):
        m = out.get(key)
        if not m:
            continue
        lines.append(f"{title}: OA {m['oa']:.4f}  mAcc {m['macc']:.4f}  mIoU {m['miou']:.4f}")
        if key != "shapes":
            lines += [f"  {name:10s} IoU {'  n/a ' if v is None else f'{v:.4f}'}"
                      for name, v in m["iou"].items()]
    if "partnet" in out:
        p = out["partnet"]
        lines.append(f"PartNet: part mIoU {p['part_miou']:.4f}  shape mIoU {p['shape_miou']:.4f}"
                     f" over {p['shapes']} shapes (every point)")
    return "\n".join(lines)
