"""What `export`, `bench` and budgets accept as a model: a checkpoint path, a shipped model
name, a config YAML (random weights, for speed work before training) or an .onnx file."""
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


def resolve_path(spec: str) -> Path:
    """A path, or a shipped weights name through `pointgcn.models.weights.resolve_weights`."""
    path = Path(spec)
    if path.exists():
        return path
    try:
        from ..models.weights import resolve_weights
    except ImportError:
        raise InputError(f"model file not found: {spec}") from None
    return Path(resolve_weights(spec))


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
    if path.is_dir():
        raise InputError(f"{path} is a directory, not a model file")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        if extra:
            raise InputError("--model-config cannot change an .onnx model")
        return ModelSource(label=path.stem, onnx_path=path)
    if suffix in CONFIG_SUFFIXES:
        cfg = load_config(path)
        cfg["model"] = {**(cfg.get("model") or {}), **extra}
        return _from_config(cfg, path.stem, seed)
    if suffix not in CHECKPOINT_SUFFIXES:
        raise InputError(f"{path}: unknown model file type {suffix or '(none)'}; expected a "
                         f"checkpoint ({', '.join(CHECKPOINT_SUFFIXES)}), a config "
                         f"({', '.join(CONFIG_SUFFIXES)}) or .onnx")
    from ..models import load_checkpoint, read_checkpoint
    ckpt = read_checkpoint(path)
    model = load_checkpoint(path, **extra)
    run_config = dict(ckpt.get("config") or {}) if ckpt.get("format") == "pointgcn" else {}
    names = (ckpt.get("meta") or {}).get("class_names")
    return ModelSource(label=path.stem, model=model, checkpoint=path, run_config=run_config,
                       class_names=list(names) if names else None)


def _from_config(cfg: dict, label: str, seed: int) -> ModelSource:
    from ..models import build_model
    torch.manual_seed(seed)
    model = build_model(cfg).eval()
    return ModelSource(label=label, model=model, run_config=cfg)
