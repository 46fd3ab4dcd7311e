"""Architecture search: SGAS (greedy decisions) or LC-NAS (latency-constrained).

  pointgcn search configs/nas_sgas_synth_tiny.yaml --method sgas --criterion 2 --out runs/sgas
      → DIR/genotype.yaml (train it: model {name: nas, genotype: DIR/genotype.yaml}),
        DIR/search_log.jsonl (per epoch: α, probabilities, scores, decision), DIR/search.json
  pointgcn search CONFIG --method lcnas --latreg latreg.pt --target-ms 20 --out runs/lc
      → also trains the genotype, measures its latency and writes the table row
        (DIR/table.{json,md}), DIR/model.pt + DIR/model_card.json, DIR/candidates.json
  pointgcn search CONFIG --method lcnas --latreg latreg.pt --lambda 0.1 …   (no target: the
        non-targeted loss λ·LatReg(E(α)))
  pointgcn search CONFIG --method lcnas --latreg latreg.pt --targets 15,20,25 --out runs/sweep
      → one search per target in DIR/target_<T>ms/, the table, candidates and DIR/pareto.png
  torchrun --nproc_per_node=2 -m apps.cli search CONFIG …     (data-parallel search)
  pointgcn search CONFIG [same overrides and options] --resume DIR
      → continues a stopped or killed search (DIR/checkpoints/last.pt, written after every
        epoch) to exactly the result of an uninterrupted one; a different config is refused
  pointgcn search CONFIG --device cuda …   (default: the config's device:, else auto)

The search runs on the engine's training loop (pointgcn.nas.search), so its run folder also
holds config.yaml, metrics.jsonl and tb/ like a training run's.

Weights are trained on the training split and α on the validation split held out from it;
the test split is only used to report the accuracy of the final trained LC-NAS models.
"""
from __future__ import annotations

import copy
import sys
import time
from pathlib import Path

from apps.cli import add_device_argument, positive_int, seed_int
from apps.paths import Input, OutputFolder

HELP = "search a cell architecture with SGAS or LC-NAS (latency-constrained)"
SETTINGS = {"lambda": "lam"}  # the library's search.lambda is --lambda (dest lam) here


def add_arguments(p):
    p.add_argument("config", type=Input(str), help="YAML config (data, model = supernet, search, final)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. search.epochs=3")
    p.add_argument("--method", choices=("sgas", "lcnas"), help="default: the config's")
    p.add_argument("--criterion", type=int, choices=(1, 2), help="SGAS criterion")
    p.add_argument("--out", type=OutputFolder(), help="output folder (default runs/search-<name>-<time>)")
    p.add_argument("--resume", type=Input(), metavar="RUN_DIR",
                   help="continue the stopped search in RUN_DIR exactly (same CONFIG, overrides "
                        "and options as it started with)")
    p.add_argument("--latreg", type=Input(), help="LC-NAS: latency regressor (pointgcn latency fit)")
    p.add_argument("--target-ms", type=float, help="LC-NAS: latency target T in ms")
    p.add_argument("--lambda", dest="lam", type=float, help="LC-NAS: latency loss weight λ")
    p.add_argument("--targets", help="LC-NAS sweep: comma-separated targets in ms")
    p.add_argument("--seed", type=seed_int, help="overrides the config's seed")
    add_device_argument(p)
    p.add_argument("--threads", type=positive_int, help="torch intra-op threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args) -> int:
    import torch

    from pointgcn.config import load_config
    from pointgcn.engine.device import device_line
    from pointgcn.engine.distributed import init_distributed, shutdown
    from pointgcn.errors import InputError
    from pointgcn.nas.pipeline import format_table, run_search, write_outputs
    from pointgcn.nas.search import resolve_search

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config, args.overrides)
    search = cfg.setdefault("search", {})
    for key, value in (("method", args.method), ("criterion", args.criterion),
                       ("target_ms", args.target_ms), ("lambda", args.lam)):
        if value is not None:
            search[key] = value
    if args.latreg is not None:
        search["latreg"] = str(args.latreg)
    if args.seed is not None:
        cfg["seed"] = args.seed
    if args.device is not None:
        cfg["device"] = args.device
    targets = parse_targets(args.targets) if args.targets else None
    if targets and args.target_ms is not None:
        raise InputError("give either --target-ms or --targets, not both")
    if targets:
        search["target_ms"] = targets[0]
    s = resolve_search(search)  # every bad setting fails here, before any data is read
    if targets and s["method"] != "lcnas":
        raise InputError("--targets is an LC-NAS sweep; add --method lcnas")
    if s["method"] == "sgas" and any(v is not None for v in (args.latreg, args.target_ms,
                                                              args.lam)):
        raise InputError("--latreg, --target-ms and --lambda are LC-NAS options; add "
                         "--method lcnas")
    if s["method"] == "lcnas" and not Path(s["latreg"]).is_file():
        raise InputError(f"latency regressor not found: {s['latreg']}")
    out = _run_folder(args, cfg, s["method"], targets)
    progress, resume = not args.no_progress, args.resume is not None
    d = init_distributed(cfg.get("device", "auto"))
    if d.main:
        print(f"device: {device_line(d.device)}")
    if s["method"] == "sgas":
        summary = run_search(cfg, out, d, progress, resume)
        if d.main:
            print(f"genotype: {summary['genotype_text']}\nwritten: {out / 'genotype.yaml'}\n"
                  f"validation {summary['key_metric']} {summary['val'].get(summary['key_metric'], 0):.4f}"
                  f" (supernet, held-out part of the training split)")
        shutdown(d)
        return 0
    from pointgcn.nas.latreg import load_latreg
    from pointgcn.nas.pipeline import target_warnings

    for warning in target_warnings(load_latreg(s["latreg"]), targets or [s["target_ms"]]):
        if d.main:
            print(f"warning: {warning}", file=sys.stderr)
    rows = []
    for target in targets or [s["target_ms"]]:
        run_cfg = copy.deepcopy(cfg)
        run_cfg["search"]["target_ms"] = target
        result = run_search(run_cfg, _sub_run(out, target, targets), d, progress, resume)
        if d.main:
            rows.append(result["row"])
    if d.main:
        paths = write_outputs(out, rows)
        print(format_table(rows), end="")
        for r in rows:
            if r["missed_target"]:
                print(f"warning: target {r['target_ms']:g} ms missed: measured "
                      f"{r['measured_ms']:.2f} ms", file=sys.stderr)
        print("test accuracy: trained model on the test split; val accuracy: supernet on the "
              "held-out validation split during search")
        print("written: " + ", ".join(str(p) for p in paths.values()))
    shutdown(d)
    return 0


def parse_targets(text: str) -> list[float]:
    """--targets "15,20,25" → [15.0, 20.0, 25.0]."""
    from pointgcn.errors import InputError

    try:
        targets = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise InputError(f"--targets must be comma-separated numbers (ms), got {text!r}") from None
    if not targets or any(not t > 0 for t in targets):
        raise InputError(f"--targets must be positive latencies in ms, got {text!r}")
    return targets


def _sub_run(out: Path, target, targets) -> Path:
    """Where one search of a run lives: the run folder, or one folder per target of a sweep."""
    return out / f"target_{target:g}ms" if targets else out


def _run_folder(args, cfg: dict, method: str, targets) -> Path:
    """The run folder: a new one, or with --resume one holding a search that has not finished."""
    from pointgcn.engine.run_folder import LAST, holds_run
    from pointgcn.errors import InputError

    out = args.resume or args.out or \
        Path("runs") / f"search-{cfg.get('name') or Path(args.config).stem}-" \
                       f"{time.strftime('%Y%m%d-%H%M%S')}"
    runs = [_sub_run(out, t, targets) for t in targets or [None]]
    finished = out / ("search.json" if method == "sgas" else "table.json")
    if args.resume is None:
        if any(p.exists() for p in [out / "search.json", out / "table.json"]) or \
                any(holds_run(r) for r in runs):
            raise InputError(f"{out} already holds a search; continue it with --resume {out} "
                             "or choose another --out")
        return out
    if args.out is not None and args.out != args.resume:
        raise InputError("--resume continues in RUN_DIR; leave out --out")
    if finished.exists():
        raise InputError(f"{out}: this search has finished ({finished.name}); nothing to resume")
    if not any(holds_run(r) for r in runs):
        raise InputError(f"{out}: no search to resume (no {LAST})")
    return out
