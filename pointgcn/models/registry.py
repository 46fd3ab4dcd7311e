"""`build_model(cfg)`: a config (dict or YAML path) → an `nn.Module`, by `model.name`."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from torch import nn

from ..config import load_config
from ..errors import ConfigError

MODELS: dict[str, Callable[[dict], nn.Module]] = {}
# Models defined in packages above this one register themselves when imported.
PLUGINS = {"nas": "pointgcn.nas.network"}


def register(name: str):
    def wrap(factory):
        MODELS[name] = factory
        return factory
    return wrap


def model_section(cfg: dict) -> dict:
    """The model part of a run config (or the dict itself if it is already a model config)."""
    return dict(cfg["model"]) if isinstance(cfg.get("model"), dict) else dict(cfg)


def build_model(cfg: dict | str | Path) -> nn.Module:
    section = model_section(load_config(cfg))
    name = section.get("name", "deepgcn")
    if name not in MODELS and name in PLUGINS:
        import importlib
        importlib.import_module(PLUGINS[name])
    if name not in MODELS:
        raise ConfigError(f"unknown model name {name!r}; known: {', '.join(sorted(MODELS))}")
    return MODELS[name](section)


@register("deepgcn")
def _deepgcn(cfg: dict) -> nn.Module:
    from .deepgcn import DeepGCN
    return DeepGCN(cfg)
