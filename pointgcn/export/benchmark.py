"""Eager PyTorch vs onnxruntime on the same model and the same clouds (`pointgcn bench`).

Per model: export to a temp dir when given PyTorch weights (no parity gate: random-weight
configs are benchmarked too) — the portable file and, where onnxruntime-extensions is
installed, the custom-kNN variant (custom_knn.py) —, then interleaved runs of the runtimes
after warm-up on one random batch, all pinned to the same thread count; latency stats,
points/s, each onnxruntime variant's label agreement with eager on that batch and speed-up
over it, and each runtime's peak inference memory measured in its own subprocess (timing.py
explains how). What it measured, and why onnxruntime is not the
faster runtime for dilated graphs, is in docs/performance.md.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from ..engine.device import resolve_device
from ..engine.predictor import TorchPredictor
from ..models import save_checkpoint
from .custom_knn import extensions_available
from .onnx_export import export_onnx
from .parity import random_clouds
from .runtime import OnnxPredictor, providers_for
from .serve import LoadedModel
from .timing import environment_line, latency_stats, peak_memory, time_interleaved

EAGER, ORT, CUSTOM = "eager", "onnxruntime", "ort-custom-knn"


def bench_source(src: LoadedModel, *, points: int, batch: int = 1, runs: int = 10,
                 warmup: int = 2, threads: int | None = None, memory: bool = True,
                 optimization: str = "all", spin: bool | None = None,
                 exporter: str = "legacy", seed: int = 0,
                 workdir: str | Path | None = None, device: str | None = "cpu",
                 provider: str | None = None, custom_knn: bool | None = None) -> dict:
    """Eager PyTorch on `device` against onnxruntime on `provider` (default: following
    `device`); on a GPU the eager peak memory is the GPU's (allocated above the loaded model).
    `custom_knn`: also the custom-kNN export in onnxruntime (None: when onnxruntime-extensions
    is installed; PyTorch weights only)."""
    threads = threads or torch.get_num_threads()
    place = resolve_device(device)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        row = {"model": src.label, "points": points, "batch": batch, "threads": threads,
               "runs": runs, "optimization": optimization, "device": str(place)}
        files, ckpt = {ORT: src.path}, None
        predictors = {}
        if src.module is not None:
            custom = extensions_available() if custom_knn is None else custom_knn
            for name in (ORT, CUSTOM) if custom else (ORT,):
                files[name] = Path(tmp) / f"{src.label}.{name}.onnx"
                report = export_onnx(src.module, files[name], points=points,
                                     batch=max(batch, 1), parity=False, exporter=exporter,
                                     run_config=src.run_config, custom_knn=name == CUSTOM)
                if name == ORT:
                    row.update(export_seconds=report.export_seconds, onnx_nodes=report.nodes,
                               exporter=exporter)
            predictors[EAGER] = TorchPredictor(src.module, threads=threads, device=place)
            if memory and place.type == "cpu":
                ckpt = Path(tmp) / f"{src.label}.pt"
                save_checkpoint(ckpt, src.module, {"model": dict(src.module.cfg)})
        for name, path in files.items():
            predictors[name] = OnnxPredictor(path, threads=threads, optimization=optimization,
                                             spin=spin, providers=providers_for(provider, device))
        row["provider"] = predictors[ORT].providers[0]
        ort = predictors[ORT]
        points = max(points, ort.min_points)
        row["points"] = points
        x = random_clouds(batch, ort.in_channels, points, seed)
        outputs = {name: p(x) for name, p in predictors.items()}
        times = time_interleaved({name: (lambda p=p: p(x)) for name, p in predictors.items()},
                                 runs, warmup)
        row["runtimes"] = {}
        for name, t in times.items():
            stats = latency_stats(t)
            stats["points_per_s"] = batch * points / (stats["mean_ms"] / 1e3)
            if memory and name == EAGER and place.type == "cuda":
                stats["peak_mb"] = gpu_peak_mb(predictors[EAGER], x, place)
                stats["memory_method"] = "torch.cuda.max_memory_allocated above the model"
            elif memory and (name != EAGER or place.type == "cpu"):
                kind, path = ("torch", ckpt) if name == EAGER else ("onnx", files[name])
                mem = peak_memory(kind, path, points, batch, threads)
                stats["peak_mb"] = mem.get("peak_mb")
                stats["memory_method"] = mem.get("method") or mem.get("error")
            row["runtimes"][name] = stats
        if EAGER in outputs:
            a = outputs[EAGER].argmax(1)
            for name in files:  # per onnxruntime variant: labels equal to eager's, speed-up
                stats = row["runtimes"][name]
                stats["label_agreement"] = float(np.mean(a == outputs[name].argmax(1)))
                stats["speedup_p50"] = row["runtimes"][EAGER]["p50_ms"] / stats["p50_ms"]
                stats["speedup_mean"] = row["runtimes"][EAGER]["mean_ms"] / stats["mean_ms"]
            for key in ("label_agreement", "speedup_p50", "speedup_mean"):
                row[key] = row["runtimes"][ORT][key]  # the portable file's, as before
    return row


def gpu_peak_mb(predictor, x: np.ndarray, device: torch.device) -> float:
    """Peak GPU memory (MB) of one inference above what was allocated before it."""
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    predictor(x)
    return (torch.cuda.max_memory_allocated(device) - base) / 2 ** 20


def markdown_table(rows: list[dict], env: dict) -> str:
    head = ("| model | N | batch | runtime | mean ms | p50 ms | p95 ms | points/s | peak MB "
            "| speed-up vs eager (p50) |")
    lines = [head, "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        for name, s in r["runtimes"].items():
            peak = s.get("peak_mb")
            ratio = f"{s['speedup_p50']:.2f}×" if "speedup_p50" in s else ""
            lines.append(f"| {r['model']} | {r['points']} | {r['batch']} | {name} | "
                         f"{s['mean_ms']:.1f} | {s['p50_ms']:.1f} | {s['p95_ms']:.1f} | "
                         f"{s['points_per_s']:.0f} | "
                         f"{'—' if peak is None else f'{peak:.0f}'} | {ratio} |")
    lines.append("")
    lines.append(f"Environment: {environment_line(env)}. Runs interleaved after warm-up; peak "
                 "MB = peak RSS of inference above the loaded model, one subprocess per runtime.")
    return "\n".join(lines)


def format_row(r: dict) -> str:
    parts = [f"{r['model']}  N={r['points']} batch={r['batch']} threads={r['threads']}"]
    for name, s in r["runtimes"].items():
        peak = s.get("peak_mb")
        parts.append(f"  {name:12s} mean {s['mean_ms']:8.1f}  p50 {s['p50_ms']:8.1f}  p95 "
                     f"{s['p95_ms']:8.1f} ms  {s['points_per_s']:10.0f} points/s"
                     + ("" if peak is None else f"  peak {peak:.0f} MB"))
    for name, s in r["runtimes"].items():
        if "speedup_p50" in s:
            parts.append(f"  {name} is {s['speedup_p50']:.2f}× eager's speed (p50); labels "
                         f"agree on {100 * s['label_agreement']:.1f}% of the batch")
    return "\n".join(parts)
