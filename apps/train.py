"""Train a model from a YAML config (plus `key=value` overrides) into a run folder.

  pointgcn train configs/synth_rooms_tiny.yaml train.epochs=5 --out runs/rooms
  pointgcn train --resume runs/rooms          # continue a stopped or killed run exactly
  pointgcn train --resume runs/rooms train.epochs=8   # extend it (cosine: a warm restart)
  pointgcn train CONFIG --device cuda train.amp=bf16     # on a GPU, mixed precision
  torchrun --nproc_per_node=2 -m apps.cli train CONFIG …   # data-parallel (one process per
                                                           # GPU with NCCL, gloo on the CPU)

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
    add_device_argument(p)
    p.add_argument("--threads", type=positive_int, help="torch intra-op threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    import torch

    from pointgcn.config import load_config
    from pointgcn.data.build import build_datasets
    from pointgcn.engine.device import device_line
    from pointgcn.engine.distributed import init_distributed, shutdown
    from pointgcn.engine.run_folder import check_new
    from pointgcn.engine.optim import drop_unreached_restarts, resolve_train
    from pointgcn.engine.trainer import Trainer
    from pointgcn.errors import InputError

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.resume:
        overrides = [x for x in (args.config, *args.overrides) if x]  # argparse: 1st in config
        if args.seed is not None or any(x.partition("=")[0].strip() != "train.epochs"
                                        or "=" not in x for x in overrides):
            raise InputError("--resume continues a run exactly as configured; it takes no "
                             "CONFIG, overrides (but train.epochs=N) or --seed (start a new "
                             "run to change them)")
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
        cfg = load_config(args.config, args.overrides)
        if args.seed is not None:
            cfg["seed"] = args.seed
        name = cfg.get("name") or Path(args.config).stem
        run_dir = args.out or Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
        check_new(run_dir)
    if args.device is not None:
        cfg["device"] = args.device
    resolve_train(cfg.get("train"))  # a bad setting or device fails before the data is read
    d = init_distributed(cfg.get("device", "auto"))
    data = build_datasets(cfg, ("train", "val"), progress=not args.no_progress and d.main)
    for line in data.report.lines() if d.main else ():  # what reading the data repaired/dropped
        print(line)
    if d.main and data.info.get("note"):
        print(f"note: {data.info['note']}")
    data.complete_model_config(cfg.setdefault("model", {}))
    if d.main:
        print(f"device: {device_line(d.device)}")
    trainer = Trainer(cfg, run_dir, data, resume=bool(args.resume),
                      progress=not args.no_progress, dist=d)
    final = trainer.fit()  # a new run that fails leaves no run folder behind
    if d.main:
        best = final["best"]
        print(f"run: {run_dir}\nbest validation {final['key_metric']} "
              f"{best[final['key_metric']]:.4f} at epoch {best['epoch']}")
    shutdown(d)
    return 0


