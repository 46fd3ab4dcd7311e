"""Evaluate a checkpoint on the test split with the data set's official protocol.

  pointgcn eval configs/synth_rooms_tiny.yaml --ckpt runs/x/checkpoints/best.pt
  pointgcn eval --ckpt runs/x/checkpoints/best.pt            # the data set the run trained on
  pointgcn eval data.root=elsewhere --ckpt runs/x/checkpoints/best.pt
  pointgcn eval CONFIG --ckpt A1.pt A2.pt A3.pt A4.pt A5.pt A6.pt --six-fold   # S3DIS 6-fold
  pointgcn eval --ckpt best.pt --reliability calib.png     # reliability diagram
  pointgcn eval --compare A.pt B.pt                        # paired bootstrap of A − B

S3DIS is scored at full resolution (every point of every test-area room, block voting) and,
labelled as such, per block (the DeepGCN papers' figure). Each score comes with a bootstrap
95% interval over the test items (rooms, shapes; fixed seed) and the expected calibration
error before/after the model's temperature. `--compare` runs two models on the same items
and says whether their difference is distinguishable from zero. Writes JSON with --json.
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
    p.add_argument("--ckpt", nargs="+", type=Input(str),
                   help="checkpoint path(s), shipped model name(s) or .onnx file(s)")
    p.add_argument("--compare", nargs=2, type=Input(str), metavar=("A", "B"),
                   help="two models on the same test items: the paired bootstrap interval "
                        "of A − B for OA, mAcc and mIoU (instead of --ckpt)")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                   help="bootstrap resamples over rooms/shapes for the intervals (0: none)")
    p.add_argument("--bootstrap-seed", type=int, default=0, metavar="S",
                   help="seed of the resampling (default 0: the same intervals every run)")
    p.add_argument("--reliability", type=Output(".png"), metavar="PNG",
                   help="draw the reliability diagram (before/after the temperature) here "
                        "(with --compare: A's; with --six-fold: pooled over the folds)")
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
    items = [x for x in (args.config, *args.overrides, *(args.ckpt or ())) if x]
    overrides = [x for x in items if "=" in x and not Path(x).exists()]
    config = args.config if args.config and args.config not in overrides else None
    ckpts = [x for x in args.ckpt or () if x not in overrides]
    cfg = load_config(config, overrides) if config else None
    if bool(ckpts) == bool(args.compare):
        raise InputError("give --ckpt or --compare A B")
    if args.bootstrap < 0:
        raise InputError(f"--bootstrap must be ≥ 0, got {args.bootstrap}")
    if args.compare and (args.six_fold or args.bootstrap < 1):
        raise InputError("--compare needs --bootstrap ≥ 1 and takes no --six-fold")
    if args.six_fold and len(ckpts) != 6:
        raise InputError(f"--six-fold needs 6 checkpoints (Area_1 … Area_6), got {len(ckpts)}")
    if not args.six_fold and not args.compare and len(ckpts) != 1:
        raise InputError("give one --ckpt (or six with --six-fold)")
    results, per_item = [], []
    for i, ckpt in enumerate(ckpts or args.compare):
        model = open_model(ckpt, device=args.device, provider=args.provider,
                           threads=args.threads)
        predictor, ckpt_cfg = model.predictor(), model.run_config
        base = cfg or (first_base if args.compare and i == 1  # B on A's data: same items
                       else _checkpoint_config(ckpt, ckpt_cfg, overrides))
        first_base = base
        run_cfg = {**base, "model": ckpt_cfg.get("model", {})}
        _note_preprocessing_changes(ckpt_cfg.get("data", {}), base.get("data", {}), ckpt_cfg,
                                    base)
        if args.six_fold:
            run_cfg["data"] = {**base["data"], "test_area": i + 1}
        per_item.append({})
        results.append(evaluate(run_cfg, predictor, batch=args.batch,
                                full_resolution=not args.no_rooms,
                                progress=not args.no_progress, resamples=args.bootstrap,
                                seed=args.bootstrap_seed, items=per_item[-1]))
    if args.compare:
        out = {"a": {"model": args.compare[0], **results[0]},
               "b": {"model": args.compare[1], **results[1]},
               "compare": compare_items(*per_item, args.bootstrap, args.bootstrap_seed)}
        print(f"A: {args.compare[0]}\n{format_report(results[0])}\n"
              f"B: {args.compare[1]}\n{format_report(results[1])}")
        print(format_compare(out["compare"]))
    else:
        out = (six_fold(results, per_item, args.bootstrap, args.bootstrap_seed)
               if args.six_fold else results[0])
        print(format_report(out))
    if args.reliability:
        from pointgcn.viz.reliability import reliability_png

        drawn = out if args.six_fold else results[0]
        key = main_protocol(drawn)
        name = "six folds" if args.six_fold else results[0]["model"]
        reliability_png(drawn[key]["calibration"], args.reliability,
                        title=f"{name}: {key.replace('_', ' ')}")
        print(f"reliability diagram → {args.reliability}")
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


PROTOCOLS = ("full_resolution", "per_block", "shapes")


def main_protocol(result: dict) -> str | None:
    """The protocol a single figure of `result` should come from (every point first)."""
    return next((k for k in (*PROTOCOLS, "partnet") if k in result), None)


def compare_items(items_a: dict, items_b: dict, resamples: int, seed: int) -> dict:
    """Paired bootstrap of A − B per protocol both evaluations have."""
    from pointgcn.engine.bootstrap import paired_difference
    from pointgcn.errors import InputError

    out = {}
    for key in (*PROTOCOLS, "partnet"):
        if key in items_a and key in items_b:
            try:
                out[key] = paired_difference(items_a[key], items_b[key], resamples, seed)
            except ValueError:
                raise InputError(f"the two models were not scored on the same {key} items; "
                                 "they must predict the same classes on the same data"
                                 ) from None
    return out


METRIC_NAMES = {"oa": "OA", "macc": "mAcc", "miou": "mIoU", "part_miou": "part mIoU",
                "shape_miou": "shape mIoU"}


def format_compare(compare: dict) -> str:
    lines = []
    for key, d in compare.items():
        unit = {"full_resolution": "rooms", "per_block": "blocks"}.get(key, "shapes")
        lines.append(f"A − B, {key.replace('_', ' ')} (paired bootstrap over {d['items']} "
                     f"{unit}, {d['resamples']} resamples, {100 * d['level']:.0f}% interval):")
        for m, name in METRIC_NAMES.items():
            if m not in d:
                continue
            r = d[m]
            verdict = ("distinguishable from zero" if r["distinguishable"]
                       else "not distinguishable from zero")
            lines.append(f"  Δ{name:10s} {r['delta']:+.4f} [{r['low']:+.4f}, {r['high']:+.4f}]"
                         f"  {verdict}")
    return "\n".join(lines)


def _trust_lines(m: dict) -> list[str]:
    """The interval and calibration lines under a protocol's scores."""
    lines = []
    if "ci" in m:
        ci = m["ci"]
        over = ci["over"].split(" (")[0]
        lines.append(f"  {100 * ci['level']:.0f}% bootstrap interval over {ci['items']} {over}: "
                     + "  ".join(f"{name} [{ci[k]['low']:.4f}, {ci[k]['high']:.4f}]"
                                 for k, name in METRIC_NAMES.items() if k in ci))
    if "calibration" in m:
        c = m["calibration"]
        if "temperatures" in c:  # six folds, each model its own
            which = "each fold's temperature (" + ", ".join(f"{t:.3f}" for t in c["temperatures"])
            which += ")"
        else:
            which = f"temperature {c['temperature']:.3f}" + (" (none recorded)"
                                                              if c["temperature"] == 1.0 else "")
        lines.append(f"  calibration: ECE {c['ece_before']:.4f} raw → {c['ece_after']:.4f} with "
                     + which)
    return lines


def format_report(out: dict) -> str:
    lines = []
    for key, title in (("full_resolution", "full resolution (every point)"),
                       ("per_block", "per block (DeepGCN papers' figure)"),
                       ("shapes", "test shapes")):
        m = out.get(key)
        if not m:
            continue
        lines.append(f"{title}: OA {m['oa']:.4f}  mAcc {m['macc']:.4f}  mIoU {m['miou']:.4f}")
        lines += _trust_lines(m)
        if key != "shapes":
            lines += [f"  {name:10s} IoU {'  n/a ' if v is None else f'{v:.4f}'}"
                      for name, v in m["iou"].items()]
    if "partnet" in out:
        p = out["partnet"]
        lines.append(f"PartNet: part mIoU {p['part_miou']:.4f}  shape mIoU {p['shape_miou']:.4f}"
                     f" over {p['shapes']} shapes (every point)")
        lines += _trust_lines(p)
    return "\n".join(lines)
