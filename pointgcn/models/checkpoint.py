"""Checkpoint files: ours (config + weights, written atomically) and the official DeepGCN format.

Ours: {"format": "pointgcn", "version": 1, "config": run config, "state_dict": …, "meta": {…}}
plus optional training state added by the engine. Everything loads with `weights_only=True`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import FormatError, InputError
from ..io.atomic import atomic_path
from .official import convert_official, is_official
from .registry import build_model, model_section

FORMAT = "pointgcn"
VERSION = 1


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """torch.save through a temp file + rename: never a half-written checkpoint."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def save_checkpoint(path: str | Path, model: nn.Module, config: dict,
                    meta: dict | None = None, **extra: Any) -> None:
    payload = {"format": FORMAT, "version": VERSION, "config": config,
               "state_dict": model.state_dict(), "meta": meta or {}, **extra}
    atomic_torch_save(payload, path)


def read_checkpoint(path: str | Path) -> dict:
    """The raw checkpoint dict; a typed one-line error for missing or unreadable files."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for truncated/garbled files
        raise FormatError(f"{path}: not a readable checkpoint ({type(e).__name__})") from e
    if not isinstance(ckpt, dict):
        raise FormatError(f"{path}: checkpoint is not a dict")
    return ckpt


def load_checkpoint(path: str | Path, **overrides: Any) -> nn.Module:
    """A ready model (eval mode) from our checkpoint or an official deep_gcns_torch one.

    `overrides` set model config keys the official format cannot record (k, conv, block, …).
    """
    return model_from_checkpoint(read_checkpoint(path), path, **overrides)


def model_from_checkpoint(ckpt: dict, source: str | Path = "checkpoint",
                          **overrides: Any) -> nn.Module:
    """`load_checkpoint` on a dict already read by `read_checkpoint` (callers that also need
    its config or meta unpickle the file once); `source` names the file in errors."""
    if ckpt.get("format") == FORMAT:
        section = model_section(dict(ckpt["config"]))
        section.update(overrides)
        model = build_model(section)
        state = ckpt["state_dict"]
    elif is_official(ckpt):
        section, state = convert_official(ckpt, **overrides)
        model = build_model(section)
    else:
        raise FormatError(f"{source}: neither a pointgcn nor an official DeepGCN checkpoint")
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shapes that do not fit the configured model
        first = str(e).split("\n\t")[1] if "\n\t" in str(e) else str(e).splitlines()[0]
        raise FormatError(f"{source}: weights do not fit the model ({first.strip()})") from None
    if missing or unexpected:
        raise FormatError(f"{source}: weights do not fit the model "
                          f"(missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]})")
    return model.eval()
