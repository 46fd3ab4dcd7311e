"""Which model serves a request: a checkpoint, a shipped name, an .onnx file, or — given a
latency budget — the most accurate candidate that meets it on the device it will serve on.

Every path returns (Predictor, run config); the run config's `data:` section carries the
block/point settings the model was trained with, so pre-processing matches training.
Resolving names and reading checkpoints is `sources.py`'s job; this module only chooses.
"""
from __future__ import annotations

from ..engine.predictor import Predictor
from ..errors import InputError
from .sources import default_class_names, torch_predictor, weights_file

__all__ = ["default_class_names", "default_model", "load_predictor", "onnx_predictor",
           "within_budget"]


def load_predictor(source: str, threads: int | None = None, device: str | None = "cpu",
                   provider: str | None = None) -> tuple[Predictor, dict]:
    """(predictor, run config) from a checkpoint path (any suffix or none), a shipped model
    name or an .onnx file; PyTorch runs on `device`, onnxruntime on `provider` (default:
    following `device`, runtime.resolve_provider)."""
    path = weights_file(source)
    if path.suffix.lower() == ".onnx":
        return onnx_predictor(path, threads, provider, device)
    return torch_predictor(path, threads, name=str(source), device=device)


def default_model(task: str) -> str:
    """The shipped model that serves `task` when none is named: the manifest entry marked
    `"default": true` for the task, else the task's first entry."""
    from ..models.weights import read_manifest

    entries = [m for m in read_manifest() if m.get("task") == task]
    if not entries:
        raise InputError(f"no shipped model for {task}; give --weights, --onnx or --budget-ms")
    return next((m for m in entries if m.get("default")), entries[0])["name"]


def onnx_predictor(path, threads: int | None = None, provider: str | None = None,
                   device: str | None = "cpu") -> tuple[Predictor, dict]:
    """(OnnxPredictor, the run config recorded at export)."""
    from .runtime import OnnxPredictor, providers_for

    pred = OnnxPredictor(path, threads=threads, providers=providers_for(provider, device))
    return pred, {**pred.config, "model": pred.config.get("model", {})}


def within_budget(budget_ms: float, *, task: str, points: int, runtime: str = "onnx",
                  threads: int | None = None, batch: int = 1, candidates=(),
                  device: str | None = "cpu") -> tuple[Predictor, dict, str]:
    """(predictor, run config, reason) of the most accurate shipped or given candidate whose
    p95 latency at `points`, measured on `device` (the one it will serve on), fits
    `budget_ms`. `candidates` are extra manifests or candidates.json files (e.g. from
    `pointgcn search`)."""
    from ..models.weights import MANIFEST, weights_dir
    from .budget import load_candidates, select_model

    shipped = weights_dir() / MANIFEST
    pool = list(load_candidates(shipped)) if shipped.is_file() else []
    for extra in candidates:
        pool += load_candidates(extra)
    if not pool:
        raise InputError("no candidate models: no shipped weights and no --candidates given")
    sel = select_model(pool, budget_ms, points=points, batch=batch, runtime=runtime, task=task,
                       threads=threads, device=device)
    predictor, cfg = sel.served(threads)
    return predictor, cfg, sel.reason
