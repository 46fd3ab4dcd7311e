"""Reproduce the seed papers' claims at this machine's scale with pointgcn's own commands
(docs/science.md): depth (plain vs residual), ablation (dilation, residual connections) and
aggregators (fixed vs learnable), on the synthetic rooms.

  python benchmarks/science.py --data data/synth/Stanford3dDataset_v1.2_Aligned_Version \
      --out runs/science [--studies depth ablation aggregators] [--epochs 4]

Every run is `pointgcn train configs/science/rooms_depth.yaml key=value …` in its own run
folder (a finished run is kept and not redone, so a stopped study continues), then `pointgcn
eval` on the held-out area (full resolution) and, for the ablation, `pointgcn analyze` on the
validation blocks. Writes OUT/science.json, OUT/science.md (tables) and loss-curve PNGs.
The data are synthetic: the numbers say whether an ordering holds here, not S3DIS figures.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pointgcn.viz.plots import plot_training_curves  # noqa: E402

CONFIG = ROOT / "configs" / "science" / "rooms_depth.yaml"
DEPTHS = (7, 14, 28, 56)
AGGREGATORS = {"mean": ["model.aggr=mean"], "max": ["model.aggr=max"],
               "sum": ["model.aggr=sum"],
               "softmax (learned β)": ["model.aggr=softmax", "model.learn_t=true"],
               "power (learned p)": ["model.aggr=power", "model.learn_p=true"]}


def studies(names: list[str]) -> dict[str, dict[str, list[str]]]:
    """{study: {run name: overrides}}."""
    out: dict[str, dict[str, list[str]]] = {}
    if "depth" in names:
        out["depth"] = {f"{block}-{d}": [f"model.block={block}", f"model.n_blocks={d}"]
                        for block in ("plain", "res") for d in DEPTHS}
    if "ablation" in names:
        out["ablation"] = {}
        for seed in (0, 1):
            for name, over in (("ResGCN-28", ["model.block=res"]),
                               ("w/o dilation", ["model.block=res", "model.use_dilation=false"]),
                               ("w/o residual", ["model.block=plain"])):
                out["ablation"][f"{name} seed {seed}"] = [*over, "model.n_blocks=28",
                                                          f"seed={seed}"]
    if "aggregators" in names:
        out["aggregators"] = {f"GEN {name}" + (f" seed {seed}" if seed else ""):
                              ["model.conv=gen", "model.block=res+", "model.n_blocks=7", *over,
                               f"seed={seed}"]
                              for seed in (0, 1) for name, over in AGGREGATORS.items()}
    return out


def cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "apps.cli", *args], cwd=ROOT, check=True)


def slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def run_one(out: Path, name: str, overrides: list[str], data: str, epochs: int,
            threads: int) -> dict:
    folder = out / slug(name)
    if not (folder / "metrics.json").exists():
        if folder.exists():  # a stopped run: continue it exactly
            cli("train", "--resume", str(folder), "--threads", str(threads), "--no-progress")
        else:
            cli("train", str(CONFIG), f"data.root={data}", f"train.epochs={epochs}",
                *overrides, "--out", str(folder), "--threads", str(threads), "--no-progress")
    ckpt = folder / "checkpoints" / "best.pt"
    test = folder / "test.json"
    if not test.exists():
        cli("eval", "--ckpt", str(ckpt), "--json", str(test), "--threads", str(threads),
            "--no-progress")
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()
               if line.strip()]
    losses = [r["loss"] for r in records if r["split"] == "train"]
    result = json.loads(test.read_text())
    miou = result.get("full_resolution", result.get("per_block", {})).get("miou")
    return {"name": name, "overrides": overrides, "train_loss": losses, "test_miou": miou,
            "folder": str(folder)}


def diagnose(run: dict, threads: int) -> None:
    out = Path(run["folder"]) / "analyze.json"
    if not out.exists():
        cli("analyze", str(Path(run["folder"]) / "checkpoints" / "best.pt"), "--json", str(out),
            "--threads", str(threads))
    (layers,) = json.loads(out.read_text())["models"].values()
    run["last_layer"] = {k: layers[-1][k] for k in ("group_distance_ratio",
                                                     "instance_information_gain")}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="synthetic rooms (S3DIS raw layout) root")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "science")
    p.add_argument("--studies", nargs="+", default=["depth", "ablation", "aggregators"],
                   choices=["depth", "ablation", "aggregators"])
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    for study, runs in studies(args.studies).items():
        results[study] = []
        for name, overrides in runs.items():
            run = run_one(args.out, name, overrides, str(Path(args.data).resolve()),
                          args.epochs, args.threads)
            if study == "ablation":
                diagnose(run, args.threads)
            results[study].append(run)
            print(f"{study}: {name}: final train loss {run['train_loss'][-1]:.4f}, "
                  f"test mIoU {run['test_miou']:.4f}", flush=True)
        curves = [{"split": r["name"], "epoch": e + 1, "loss": v}
                  for r in results[study] for e, v in enumerate(r["train_loss"])]
        plot_training_curves(curves, args.out / f"{study}_loss.png")
    (args.out / "science.json").write_text(json.dumps(results, indent=2))
    print(f"results → {args.out / 'science.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
