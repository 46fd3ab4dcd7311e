"""`build_model(cfg)`: a config (dict or YAML path) → an `nn.Module`, by `model.name`.

Sizes are bounded before anything is allocated: each width and depth key by `MAX_WIDTH` /
`MAX_DEPTH` (checked by the models' own config resolution), and the whole model by
`MAX_PARAMETERS`, counted on PyTorch's meta device (no memory, no random numbers drawn), so
a typo or a crafted checkpoint (`channels: 300000`, 720 GB) is a one-line error, not an
out-of-memory kill.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..config import load_config
from ..errors import ConfigError

# Generous: the DeepGCN papers use 64–256 channels, a fusion of 1024 and at most 112 layers.
MAX_WIDTH = 4096
MAX_DEPTH = 200
MAX_PARAMETERS = 1_000_000_000  # 4 GB of float32 weights (16 GB to train with Adam)

MODELS: dict[str, Callable[[dict], nn.Module]] = {}
# Model config keys that may name a file instead of holding its content, per model name.
FILE_KEYS: dict[str, tuple[str, ...]] = {}
# Models defined in packages above this one register themselves when imported.
PLUGINS = {"nas": "pointgcn.nas.network"}


def register(name: str, file_keys: tuple[str, ...] = ()):
    """Register a model factory; `file_keys` are the config keys it reads files from (its
    resolved config, `model.cfg`, must hold their content instead)."""
    def wrap(factory):
        MODELS[name] = factory
        FILE_KEYS[name] = tuple(file_keys)
        return factory
    return wrap


def model_section(cfg: dict) -> dict:
    """The model part of a run config (or the dict itself if it is already a model config)."""
    return dict(cfg["model"]) if isinstance(cfg.get("model"), dict) else dict(cfg)


def _factory(name) -> Callable[[dict], nn.Module]:
    if isinstance(name, str) and name not in MODELS and name in PLUGINS:
        import importlib
        importlib.import_module(PLUGINS[name])
    if not isinstance(name, str) or name not in MODELS:
        raise ConfigError(f"unknown model name {name!r}; known: {', '.join(sorted(MODELS))}")
    return MODELS[name]


def file_references(section: dict) -> dict:
    """{key: path} for the keys of a model section that name a file instead of holding it."""
    name = section.get("name", "deepgcn")
    _factory(name)  # imports the model's plugin, which registers its file keys
    return {k: section[k] for k in FILE_KEYS[name] if isinstance(section.get(k), (str, Path))}


def build_model(cfg: dict | str | Path) -> nn.Module:
    """The model a config describes, refused before allocation if it exceeds MAX_PARAMETERS."""
    section = model_section(load_config(cfg))
    factory = _factory(section.get("name", "deepgcn"))
    with torch.device("meta"):
        size = sum(t.numel() for t in factory(section).state_dict().values())
    if size > MAX_PARAMETERS:
        raise ConfigError(f"the model would hold {size / 1e9:.1f} billion numbers "
                          f"({4 * size / 1e9:.0f} GB); at most {MAX_PARAMETERS / 1e9:g} "
                          "billion are built (lower model.channels, n_blocks or widths)")
    return factory(section)


@register("deepgcn")
def _deepgcn(cfg: dict) -> nn.Module:
    from .deepgcn import DeepGCN
    return DeepGCN(cfg)
