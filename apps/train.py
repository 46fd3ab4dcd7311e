"""Train a model from a YAML config (plus `key=value` overrides) into a run folder.

  pointgcn train configs/synth_rooms_tiny.yaml train.epochs=5 --out runs/rooms
  pointgcn train --resume runs/rooms          # continue a stopped or killed run exactly
  pointgcn train --resume runs/rooms train.epochs=8   # extend it (cosine: a warm restart)
  pointgcn train CONFIG --device cuda train.amp=bf16     # on a GPU, mixed precision
  torchrun --nproc_per_node=2 -m apps.cli train CONFIG …   # data-parallel (one process per
                                                           # GPU with NCCL, gloo on the CPU)

  pointgcn train CONFIG --seeds 0,1,2 --out runs/recipe   # one run per seed (runs/recipe/seed-0
                                                        # …), then mean ± std (seeds.json)

At the end each checkpoint gets the temperature fitted on the validation split (calibrated
probabilities; `eval` reports ECE before/after on the test split).

`--device` (default: the config's `device:`, else auto = CUDA when available). The run folder
gets config.yaml (resolved, with the device), metrics.jsonl, metrics.json, checkpoints/last.pt
and best.pt (the best validation key metric: mIoU, OA or PartNet part mIoU), and tb/.
"""
from __future__ import annotations

import time
from pathlib import Path

from apps.cli import add_device_argument, positive_int, seed_int
from apps.paths import Input, OutputFolder

HELP = "train a model from a config (resumable, torchrun-ready)"


def add_arguments(p):
    p.add_argument("config", nargs="?", type=Input(str), help="YAML config (not needed with --resume)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.epochs=2")
    p.add_argument("--out", type=OutputFolder(),
                   help="run folder (default runs/<name>-<time>; --resume continues in RUN_DIR)")
    p.add_argument("--resume", type=Input(), metavar="RUN_DIR",
                   help="continue the run in RUN_DIR from its last checkpoint (the only "
                        "override it takes is train.epochs=N, to extend the run)")
    p.add_argument("--seed", type=seed_int, help="overrides the config's seed")
    p.add_argument("--seeds", type=seed_list, metavar="S,S,…",
                   help="train the recipe once per seed into OUT/seed-S and write the mean ± "
                        "std of the final validation metrics to OUT/seeds.json")
    add_device_argument(p)
    p.add_argument("--threads", type=positive_int, help="torch intra-op threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def seed_list(text: str) -> list[int]:
    import argparse

    try:
        seeds = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        seeds = []
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"expected distinct whole numbers ≥ 0 separated by commas, "
                                         f"got {text!r}")
    return seeds


def run(args) -> int:
    import torch

    from pointgcn.config import load_config
    from pointgcn.engine.distributed import init_distributed, shutdown
    from pointgcn.engine.run_folder import check_new
    from pointgcn.engine.optim import drop_unreached_restarts, resolve_train
    from pointgcn.errors import InputError

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.resume:
        overrides = [x for x in (args.config, *args.overrides) if x]  # argparse: 1st in config
        if args.seed is not None or args.seeds or any(
                x.partition("=")[0].strip() != "train.epochs" or "=" not in x for x in overrides):
            raise InputError("--resume continues a run exactly as configured; it takes no "
                             "CONFIG, overrides (but train.epochs=N), --seed or --seeds (start "
                             "a new run to change them)")
        cfg_path = args.resume / "config.yaml"
        if not cfg_path.is_file():
            raise InputError(f"{args.resume}: not a run folder (no config.yaml)")
        if args.out is not None and args.out != args.resume:
            raise InputError("--resume continues the run in RUN_DIR; leave out --out (copy "
                             "the folder first to continue it elsewhere)")
        cfg = load_config(cfg_path, overrides)
        drop_unreached_restarts(cfg.get("train"))
        run_dir = args.resume
    else:
        if not args.config:
            raise InputError("give a CONFIG (or --resume RUN_DIR)")
        if args.seed is not None and args.seeds:
            raise InputError("give --seed or --seeds, not both")
        cfg = load_config(args.config, args.overrides)
        if args.seed is not None:
            cfg["seed"] = args.seed
        name = cfg.get("name") or Path(args.config).stem
        run_dir = args.out or Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
        check_new(run_dir)
        for seed in args.seeds or ():
            check_new(run_dir / f"seed-{seed}")
        if args.seeds and (run_dir / "seeds.json").exists():
            raise InputError(f"{run_dir} already holds a multi-seed summary (seeds.json); "
                             "choose another --out")
    if args.device is not None:
        cfg["device"] = args.device
    resolve_train(cfg.get("train"))  # a bad setting or device fails before the data is read
    d = init_distributed(cfg.get("device", "auto"))
    if args.seeds:
        _train_seeds(cfg, run_dir, args, d)
    else:
        _train_one(cfg, run_dir, args, d)
    shutdown(d)
    return 0


def _train_one(cfg: dict, run_dir: Path, args, d) -> dict:
    from pointgcn.data.build import build_datasets
    from pointgcn.engine.calibration_hook import TemperatureHook
    from pointgcn.engine.device import device_line
    from pointgcn.engine.trainer import Trainer

    data = build_datasets(cfg, ("train", "val"), progress=not args.no_progress and d.main)
    for line in data.report.lines() if d.main else ():  # what reading the data repaired/dropped
        print(line)
    if d.main and data.info.get("note"):
        print(f"note: {data.info['note']}")
    data.complete_model_config(cfg.setdefault("model", {}))
    if d.main:
        print(f"device: {device_line(d.device)}")
    trainer = Trainer(cfg, run_dir, data, resume=bool(args.resume),
                      progress=not args.no_progress, dist=d, hooks=[TemperatureHook()])
    final = trainer.fit()  # a new run that fails leaves no run folder behind
    if d.main:
        best = final["best"]
        print(f"run: {run_dir}\nbest validation {final['key_metric']} "
              f"{best[final['key_metric']]:.4f} at epoch {best['epoch']}")
    return final


def _train_seeds(cfg: dict, root: Path, args, d) -> None:
    """One run per seed in ROOT/seed-S, then ROOT/seeds.json. A failure removes the seed runs
    made here (and ROOT if made here), so no partial recipe is left; nothing else in ROOT is
    touched."""
    import copy
    import json
    import shutil

    from pointgcn.engine.bootstrap import seed_summary
    from pointgcn.io.atomic import atomic_path

    finals, made_root = {}, not root.exists()
    try:
        for seed in args.seeds:
            if d.main:
                print(f"seed {seed}:")
            run_cfg = {**copy.deepcopy(cfg), "seed": seed}
            finals[seed] = _train_one(run_cfg, root / f"seed-{seed}", args, d)
        summary = seed_summary(finals)
        summary["runs"] = {str(s): str(root / f"seed-{s}") for s in args.seeds}
        if d.main:
            with atomic_path(root / "seeds.json") as tmp:
                tmp.write_text(json.dumps(summary, indent=2) + "\n")
    except BaseException:
        if d.main:
            for seed in finals:  # completed runs of this recipe (a failed one removes itself)
                shutil.rmtree(root / f"seed-{seed}", ignore_errors=True)
            if made_root and root.is_dir() and not any(root.iterdir()):
                root.rmdir()
        raise
    if d.main:
        print(format_seeds(summary) + f"\nsummary: {root / 'seeds.json'}")


def format_seeds(summary: dict) -> str:
    n = len(summary["seeds"])
    lines = [f"over {n} seeds ({', '.join(map(str, summary['seeds']))}), final validation "
             "(mean ± sample std):"]
    for name, s in [*summary["final_validation"].items(),
                    *((k, v) for k, v in summary.items() if k.startswith("best_"))]:
        std = "n/a" if s["std"] is None else f"{s['std']:.4f}"
        lines.append(f"  {name:14s} {s['mean']:.4f} ± {std}")
    return "\n".join(lines)


