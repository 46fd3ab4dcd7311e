"""Which model serves a request: a checkpoint, a shipped name, an .onnx file, or — given a
latency budget — the most accurate candidate that meets it on this device.

Every path returns (Predictor, run config); the run config's `data:` section carries the
block/point settings the model was trained with, so pre-processing matches training.
"""
from __future__ import annotations

from pathlib import Path

from ..engine.predictor import Predictor, TorchPredictor
from ..errors import InputError


def default_class_names(model_cfg: dict) -> list[str]:
    """S3DIS names for 13-class segmenters, ModelNet40 names for 40-class classifiers."""
    from ..data.classes import MODELNET40_CLASSES, S3DIS_CLASSES

    n, task = model_cfg["n_classes"], model_cfg["task"]
    if task == "segmentation" and n == len(S3DIS_CLASSES):
        return list(S3DIS_CLASSES)
    if task == "classification" and n == len(MODELNET40_CLASSES):
        return list(MODELNET40_CLASSES)
    return [str(i) for i in range(n)]


def load_predictor(source: str, threads: int | None = None) -> tuple[Predictor, dict]:
    """(predictor, run config) from a checkpoint path, a shipped model name or an .onnx file."""
    from ..models import load_checkpoint, read_checkpoint
    from ..models.weights import resolve_weights

    if str(source).endswith(".onnx"):
        from .runtime import OnnxPredictor

        if not Path(source).is_file():
            raise InputError(f"ONNX model not found: {source}")
        pred = OnnxPredictor(source, threads=threads)
        return pred, {**pred.config, "model": pred.config.get("model", {})}
    path = resolve_weights(source)
    ckpt = read_checkpoint(path)
    cfg = dict(ckpt.get("config") or {})
    model = load_checkpoint(path)
    cfg["model"] = dict(model.cfg)
    names = (ckpt.get("meta") or {}).get("class_names") or default_class_names(model.cfg)
    return TorchPredictor(model, name=str(source), threads=threads, class_names=names), cfg


def within_budget(budget_ms: float, *, task: str, points: int, runtime: str = "onnx",
                  threads: int | None = None, batch: int = 1,
                  candidates: list[str | Path] = ()) -> tuple[Predictor, dict, str]:
    """(predictor, run config, reason) of the most accurate shipped or given candidate whose
    measured p95 latency at `points` fits `budget_ms`. `candidates` are extra manifests or
    candidates.json files (e.g. from `pointgcn search`)."""
    from ..models.weights import MANIFEST, weights_dir
    from .budget import load_candidates, select_model

    pool = list(load_candidates(weights_dir() / MANIFEST)) if (weights_dir() / MANIFEST).is_file() else []
    for extra in candidates:
        pool += load_candidates(extra)
    if not pool:
        raise InputError("no candidate models: no shipped weights and no --candidates given")
    sel = select_model(pool, budget_ms, points=points, batch=batch, runtime=runtime, task=task,
                       threads=threads)
    predictor, cfg = load_predictor(str(sel.choice.path), threads)
    if runtime == "onnx":
        onnx = sel.predictor(threads)
        onnx.class_names = predictor.class_names
        predictor = onnx
    return predictor, cfg, sel.reason


def predictor_from_args(args, task: str, default_points: int) -> tuple[Predictor, dict]:
    """The CLI's --weights / --onnx / --budget-ms choice (segment, classify)."""
    if getattr(args, "budget_ms", None) is not None:
        points = args.points or default_points
        predictor, cfg, reason = within_budget(args.budget_ms, task=task, points=points,
                                               runtime=args.runtime, threads=args.threads,
                                               candidates=args.candidates or ())
        print(reason)
        return predictor, cfg
    source = args.onnx or args.weights
    if source is None:
        raise InputError("give --weights, --onnx or --budget-ms")
    return load_predictor(str(source), args.threads)
