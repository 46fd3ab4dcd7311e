"""The GPU check: one script, under 5 minutes on one GPU, from the source tree.

    PYTHONPATH=. python benchmarks/gpu_check.py [--md table.md] [--json results.json]

Needs torch (≥ 2.11, with CUDA), numpy, pyyaml, scipy, tqdm and tensorboard — not open3d or
trimesh, and pointgcn need not be installed. Prints a markdown table and exits 1 if any stage
failed; on a machine without CUDA it says so in one line and exits 2. Stages:
1. ResGCN-28, the S3DIS config (B 8, N 4096): training steps/s (the engine's own step:
   autocast, gradient scaler, clipping) and peak GPU memory, fp32 and bf16;
2. eager forward latency of ResGCN-28 at N 4096, B 1 and B 16, GPU vs this machine's CPU;
3. kNN at N 4096 / 16384, C 64, k·d 16 … 432, GPU vs this machine's CPU;
4. peak training memory (one step) of res vs rev blocks at 7 / 28 / 56 / 112 blocks (C 64,
   k 16, N 4096, B 4, no dilation, head on the last block): the RevGNN claim on a GPU;
5. one SGAS search epoch on a tiny in-memory data set, and a 20-architecture `latency collect`
   on the GPU (CUDA-event timing).
`--smoke` runs every stage at toy sizes on whatever device there is (the CPU here): the
test suite uses it to keep this script working where no GPU is at hand.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
FULL = dict(points=4096, batch=8, big_batch=16, blocks=28, steps=5, cpu_runs=2,
            knn_points=(4096, 16384), knn_kd=(16, 64, 160, 432), depths=(7, 28, 56, 112),
            mem_batch=4, archs=20, latency=dict(points=1024, width=32, cells=2, k=9), rounds=10)
SMOKE = dict(points=128, batch=2, big_batch=3, blocks=3, steps=1, cpu_runs=1,
             knn_points=(64, 128), knn_kd=(4, 16), depths=(2, 4), mem_batch=1, archs=2,
             latency=dict(points=64, width=4, cells=1, k=4, fusion_channels=8, prediction=[8]),
             rounds=2)


def timed(fn, device: torch.device, runs: int, warmup: int = 1) -> float:
    """Median seconds of `fn()` (synchronised on a GPU)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_mb(device: torch.device, fn) -> float | None:
    """Peak memory (MB) `fn` allocates on a GPU beyond what was there (None on the CPU)."""
    if device.type != "cuda":
        fn()
        return None
    sync(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    sync(device)
    return (torch.cuda.max_memory_allocated(device) - base) / 2 ** 20


def resgcn28(size: dict) -> dict:
    from pointgcn.config import load_config

    cfg = load_config(ROOT / "configs" / "s3dis_resgcn28.yaml")
    cfg["model"]["n_blocks"] = size["blocks"]
    cfg["model"]["k"] = min(cfg["model"]["k"], size["points"] // (size["blocks"] + 1))
    return cfg


def blocks_dataset(n: int, size: dict, classes: int = 13):
    from pointgcn.data.build import memory_bundle

    g = torch.Generator().manual_seed(0)
    items = [(torch.rand(9, size["points"], generator=g),
              torch.randint(0, classes, (size["points"],), generator=g)) for _ in range(n)]
    return memory_bundle(items, items[:2], [str(i) for i in range(classes)], "segmentation", 9)


def stage_training(device, size, rows, workdir):
    from pointgcn.engine.distributed import Dist
    from pointgcn.engine.trainer import Trainer

    data = blocks_dataset(size["batch"], size)
    for amp in ("none", "bf16"):
        cfg = resgcn28(size)
        cfg["train"] = {"batch_size": size["batch"], "amp": amp, "grad_clip": 1.0, "epochs": 1}
        trainer = Trainer(cfg, workdir / f"train-{amp}", data, progress=False,
                          dist=Dist(device=device))
        trainer.model.train()
        feats = torch.stack([f for f, _ in data.train]).to(device)
        labels = torch.stack([y for _, y in data.train]).to(device)
        step = lambda: trainer._step(feats, labels)  # noqa: E731
        seconds = timed(step, device, size["steps"])
        mem = peak_mb(device, step)
        rows.append(("ResGCN-28 training step", f"B {size['batch']}, N {size['points']}, {amp}",
                     f"{1 / seconds:.2f} steps/s", _mb(mem), ""))


def stage_forward(device, size, rows):
    from pointgcn.models import build_model

    torch.manual_seed(0)
    model = build_model(resgcn28(size)).eval()
    cpu = torch.device("cpu")
    for batch in (1, size["big_batch"]):
        x = torch.rand(batch, 9, size["points"])
        with torch.no_grad():  # B 16 on the CPU takes seconds a run: one after warm-up
            cpu_s = timed(lambda: model.to(cpu)(x), cpu, size["cpu_runs"] if batch == 1 else 1)
            on = x.to(device)
            model.to(device)
            gpu_s = timed(lambda: model(on), device, max(3, size["steps"]), warmup=2)
        rows.append(("ResGCN-28 eager forward", f"B {batch}, N {size['points']}",
                     _ms(gpu_s), _ms(cpu_s), f"{cpu_s / gpu_s:.1f}×"))


def stage_knn(device, size, rows):
    from pointgcn.graph import knn

    cpu = torch.device("cpu")
    for n in size["knn_points"]:
        x = torch.randn(1, 64, n)
        on = x.to(device)
        for kd in size["knn_kd"]:
            gpu_s = timed(lambda: knn(on, kd), device, 5, warmup=2)
            cpu_s = timed(lambda: knn(x, kd), cpu, size["cpu_runs"])
            same = torch.equal(knn(on, kd).cpu(), knn(x, kd))
            rows.append(("kNN (dense, fused product + topk)", f"N {n}, C 64, k·d {kd}",
                         _ms(gpu_s), _ms(cpu_s),
                         f"{cpu_s / gpu_s:.1f}×{'' if same else ' (neighbours differ!)'}"))
            if not same:
                raise RuntimeError(f"GPU and CPU kNN disagree at N {n}, k·d {kd}")


def stage_memory(device, size, rows):
    from pointgcn.models import build_model

    for depth in size["depths"]:
        peaks = {}
        for block in ("res", "rev"):
            torch.manual_seed(0)
            cfg = dict(n_blocks=depth, channels=64, k=16, in_channels=9, n_classes=13,
                       block=block, use_dilation=False, stochastic=False, fusion_input="last",
                       fusion_channels=256, prediction=[128])
            model = build_model(cfg).to(device).train()
            x = torch.rand(size["mem_batch"], 9, size["points"], device=device)
            peaks[block] = peak_mb(device, lambda: model(x).float().sum().backward())
            del model
        ratio = f"{peaks['res'] / peaks['rev']:.1f}× less (rev)" if peaks["rev"] else ""
        rows.append(("training memory res vs rev", f"{depth} blocks, B {size['mem_batch']}, "
                     f"N {size['points']}", f"res {_mb(peaks['res'])}",
                     f"rev {_mb(peaks['rev'])}", ratio))


def stage_search(device, size, rows, workdir):
    from pointgcn.data.build import memory_bundle
    from pointgcn.engine.distributed import Dist
    from pointgcn.nas.latency import collect
    from pointgcn.nas.latency_file import read_rows
    from pointgcn.nas.search import search_supernet

    g = torch.Generator().manual_seed(0)
    items = [(torch.randn(3, 256, generator=g), torch.tensor(i % 4)) for i in range(48)]
    data = memory_bundle(items[:32], items[32:], list("abcd"), "classification", 3)
    cfg = {"seed": 0, "model": dict(cells=2, channels=16, k=9, fusion_channels=64,
                                    prediction=[32]),
           "search": dict(epochs=1, warmup_epochs=0, decision_freq=1, batch_size=8)}
    t = time.perf_counter()
    search = search_supernet(cfg, workdir / "search", data, Dist(device=device), progress=False)
    search.genotype.validate()
    rows.append(("SGAS search epoch", "2 cells, C 16, N 256, 32 clouds",
                 f"{time.perf_counter() - t:.1f} s", "", search.genotype.describe()[:40]))
    t = time.perf_counter()
    lat = size["latency"]
    collect(workdir / "lat.jsonl", size["archs"], lat, seed=0, progress=False,
            rounds=size["rounds"], device=str(device))
    latency_rows = read_rows(workdir / "lat.jsonl")
    ms = [r["latency_ms"] for r in latency_rows]
    rows.append((f"latency collect ({size['archs']} archs)",
                 f"N {lat['points']}, C {lat['width']}, {lat['cells']} cells",
                 f"{time.perf_counter() - t:.1f} s", "", f"median {np.median(ms):.2f} ms "
                 f"({latency_rows[0]['stats']['clock']} clock)"))


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"


def _mb(mb: float | None) -> str:
    return "—" if mb is None else f"{mb:.0f} MB"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--md", type=Path, help="also write the table here")
    p.add_argument("--json", type=Path, help="also write the results as JSON")
    p.add_argument("--smoke", action="store_true", help="toy sizes on any device (tests)")
    args = p.parse_args(argv)
    if not torch.cuda.is_available() and not args.smoke:
        print(f"gpu_check: no CUDA GPU is available to torch {torch.__version__} here; "
              "run it on a machine with one", file=sys.stderr)
        return 2
    from pointgcn.engine.device import describe_device, device_line, resolve_device

    device = resolve_device("auto")
    size = SMOKE if args.smoke else FULL
    if args.smoke:  # toy sizes on a shared machine: a second thread only spins
        torch.set_num_threads(1)
    rows, failed, started = [], [], time.time()
    with tempfile.TemporaryDirectory() as tmp:
        stages = [("training", lambda: stage_training(device, size, rows, Path(tmp))),
                  ("forward", lambda: stage_forward(device, size, rows)),
                  ("knn", lambda: stage_knn(device, size, rows)),
                  ("memory", lambda: stage_memory(device, size, rows)),
                  ("search", lambda: stage_search(device, size, rows, Path(tmp)))]
        for name, run in stages:
            t = time.time()
            try:
                run()
            except Exception as e:  # every stage runs; the table says which failed and why
                failed.append(name)
                traceback.print_exc()
                rows.append((f"FAILED: {name}", "", "", "", f"{type(e).__name__}: {e}"[:120]))
            print(f"[{name}: {time.time() - t:.0f} s]", file=sys.stderr, flush=True)
    table = "\n".join(
        [f"GPU check on {device_line(device)}; CPU side: {describe_device('cpu')['name']}, "
         f"{torch.get_num_threads()} threads; torch {torch.__version__}; "
         f"{time.time() - started:.0f} s in all.", "",
         "| stage | setting | GPU | CPU / other | ratio / note |", "|---|---|---|---|---|"]
        + ["| " + " | ".join(str(c).replace("|", "/") for c in r) + " |" for r in rows])
    print(table)
    if args.md:
        args.md.write_text(table + "\n")
    if args.json:
        args.json.write_text(json.dumps({"device": describe_device(device), "rows": rows,
                                         "failed": failed}, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
