"""What `export`, `bench`, budgets and serving accept as a model: a checkpoint path, a shipped
model name, a config YAML (random weights, for speed work before training) or an .onnx file.

The one place that turns such a spec into a file (`resolve_path`) and a checkpoint into a
model (`open_checkpoint`: one unpickling gives the model, its run config and its meta).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..config import apply_overrides, load_config
from ..errors import InputError

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".tar")
CONFIG_SUFFIXES = (".yaml", ".yml")


@dataclass
class ModelSource:
    label: str
    model: nn.Module | None = None          # PyTorch model (eval mode), if there is one
    onnx_path: Path | None = None           # an existing .onnx file
    checkpoint: Path | None = None          # where the PyTorch weights came from
    run_config: dict = field(default_factory=dict)
    class_names: list[str] | None = None

    @property
    def in_channels(self) -> int:
        if self.model is not None:
            return int(self.model.cfg["in_channels"])
        from .runtime import OnnxPredictor
        return OnnxPredictor(self.onnx_path).in_channels


def parse_overrides(items: list[str] | None) -> dict:
    """`["k=9", "conv=mr"]` → `{"k": 9, "conv": "mr"}` (YAML-typed values)."""
    return apply_overrides({}, items or [])


def resolve_path(spec: str | Path) -> Path:
    """An existing file (any name, with or without suffix), else a shipped model's name
    (hash-verified by `resolve_weights`); a folder is refused."""
    from ..models.weights import resolve_weights

    path = Path(spec)
    if path.is_file():
        return path
    if path.is_dir():
        raise InputError(f"{path} is a directory, not a model file")
    if path.suffix.lower() == ".onnx":
        raise InputError(f"ONNX model not found: {path}")
    return Path(resolve_weights(spec))


def weights_file(spec: str | Path) -> Path:
    """`resolve_path` for uses that need trained weights (serving, latency budgets): a
    checkpoint (known suffix or none) or an .onnx file; a config YAML is refused."""
    path = resolve_path(spec)
    suffix = path.suffix.lower()
    if suffix in CONFIG_SUFFIXES:
        raise InputError(f"{path}: a config YAML has no trained weights; give a checkpoint, "
                         "a shipped model name or an .onnx file")
    if suffix and suffix != ".onnx" and suffix not in CHECKPOINT_SUFFIXES:
        raise InputError(f"{path}: unknown model file type {suffix}; expected a checkpoint "
                         f"({', '.join(CHECKPOINT_SUFFIXES)}) or .onnx")
    return path


def open_checkpoint(path: str | Path, **overrides) -> tuple[nn.Module, dict, dict]:
    """(model in eval mode, run config, meta) from one read of a pointgcn or official
    checkpoint. The run config's `model` section is the model actually built (overrides
    included); an official checkpoint has no run config beyond that."""
    from ..models.checkpoint import FORMAT, model_from_checkpoint, read_checkpoint

    ckpt = read_checkpoint(path)
    model = model_from_checkpoint(ckpt, path, **overrides)
    run_config = dict(ckpt.get("config") or {}) if ckpt.get("format") == FORMAT else {}
    run_config["model"] = dict(model.cfg)
    meta = dict(ckpt.get("meta") or {})
    if isinstance(meta.get("conventions"), dict):  # what the model was trained on (harmonise)
        run_config["conventions"] = meta["conventions"]
    return model, run_config, meta


def default_class_names(model_cfg: dict) -> list[str]:
    """S3DIS names for 13-class segmenters, ModelNet40 names for 40-class classifiers."""
    from ..data.classes import MODELNET40_CLASSES, S3DIS_CLASSES

    n, task = int(model_cfg["n_classes"]), model_cfg.get("task")
    if task == "segmentation" and n == len(S3DIS_CLASSES):
        return list(S3DIS_CLASSES)
    if task == "classification" and n == len(MODELNET40_CLASSES):
        return list(MODELNET40_CLASSES)
    return [str(i) for i in range(n)]


def torch_predictor(path: str | Path, threads: int | None = None, name: str | None = None,
                    device: str | None = "cpu"):
    """(TorchPredictor on `device`, run config) of a checkpoint, class names from its meta or
    defaults."""
    from ..engine.predictor import TorchPredictor

    model, run_config, meta = open_checkpoint(path)
    names = meta.get("class_names") or default_class_names(model.cfg)
    return TorchPredictor(model, name=name or str(path), threads=threads,
                          class_names=list(names), device=device or "auto"), run_config


def load_source(spec: str | None, overrides: list[str] | None = None,
                seed: int = 0) -> ModelSource:
    """Open `spec`; with `spec=None` build a model from `overrides` alone (random weights)."""
    extra = parse_overrides(overrides)
    if spec is None:
        if not extra:
            raise InputError("give a model (checkpoint, config YAML or .onnx) or "
                             "--model-config key=value …")
        return _from_config({"model": extra}, "model-config", seed)
    path = resolve_path(spec)
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        if extra:
            raise InputError("--model-config cannot change an .onnx model")
        return ModelSource(label=path.stem, onnx_path=path)
    if suffix in CONFIG_SUFFIXES:
        cfg = load_config(path)
        cfg["model"] = {**(cfg.get("model") or {}), **extra}
        return _from_config(cfg, path.stem, seed)
    if suffix and suffix not in CHECKPOINT_SUFFIXES:
        raise InputError(f"{path}: unknown model file type {suffix}; expected a "
                         f"checkpoint ({', '.join(CHECKPOINT_SUFFIXES)}), a config "
                         f"({', '.join(CONFIG_SUFFIXES)}) or .onnx")
    model, run_config, meta = open_checkpoint(path, **extra)
    names = meta.get("class_names")
    return ModelSource(label=path.stem, model=model, checkpoint=path, run_config=run_config,
                       class_names=list(names) if names else None)


def _from_config(cfg: dict, label: str, seed: int) -> ModelSource:
    from ..models import build_model
    torch.manual_seed(seed)
    model = build_model(cfg).eval()
    return ModelSource(label=label, model=model, run_config=cfg)
