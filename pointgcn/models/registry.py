"""`build_model(cfg)`: a config (dict or YAML path) → an `nn.Module`, by `model.name`.

Sizes are bounded before anything is allocated: each width and depth key by `MAX_WIDTH` /
`MAX_DEPTH` (checked by the models' own config resolution), and the whole model by
`MAX_PARAMETERS`, counted on PyTorch's meta device (no memory, no random numbers drawn), so
a typo or a crafted checkpoint (`channels: 300000`, 720 GB) is a one-line error, not an
out-of-memory kill.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..config import load_config
from ..errors import ConfigError
from ..registry import Registry

# Generous: the DeepGCN papers use 64–256 channels, a fusion of 1024 and at most 112 layers.
MAX_WIDTH = 4096
MAX_DEPTH = 200
MAX_REVERSIBLE_DEPTH = 1001  # RevGNN's 1001 layers: reversible memory does not grow with depth
MAX_PARAMETERS = 1_000_000_000  # 4 GB of float32 weights (16 GB to train with Adam)

# name → class taking the model config. An entry may say which config keys can name a file
# instead of holding its content (`file_keys`; its resolved config, `model.cfg`, holds the
# content). The searched-cell networks are defined in `pointgcn.nas`, a package above this one,
# and register "nas" when it is imported.
MODELS = Registry("model.name", plugins={"nas": "pointgcn.nas.network"})


def model_section(cfg: dict) -> dict:
    """The model part of a run config (or the dict itself if it is already a model config)."""
    return dict(cfg["model"]) if isinstance(cfg.get("model"), dict) else dict(cfg)


def file_references(section: dict) -> dict:
    """{key: path} for the keys of a model section that name a file instead of holding it."""
    keys = MODELS.info(section.get("name", "deepgcn")).get("file_keys", ())
    return {k: section[k] for k in keys if isinstance(section.get(k), (str, Path))}


def build_model(cfg: dict | str | Path) -> nn.Module:
    """The model a config describes, refused before allocation if it exceeds MAX_PARAMETERS."""
    section = model_section(load_config(cfg))
    factory = MODELS.get(section.get("name", "deepgcn"))
    with torch.device("meta"):
        size = sum(t.numel() for t in factory(section).state_dict().values())
    if size > MAX_PARAMETERS:
        raise ConfigError(f"the model would hold {size / 1e9:.1f} billion numbers "
                          f"({4 * size / 1e9:.0f} GB); at most {MAX_PARAMETERS / 1e9:g} "
                          "billion are built (lower model.channels, n_blocks or widths)")
    return factory(section)
