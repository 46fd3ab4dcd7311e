"""Checkpoint files: ours (config + weights, written atomically) and the official DeepGCN format.

Ours: {"format": "pointgcn", "version": 1, "config": run config, "state_dict": …, "meta": {…}}
plus optional training state added by the engine. Everything loads with `weights_only=True`.

A checkpoint rebuilds its model from itself alone: the config's `model` section is written as
the model resolved it (`model.cfg`: defaults filled, a genotype file's content instead of its
path), and loading never reads a path named inside a checkpoint. Every tensor read is finite
(NaN weights would label everything as one class without a word), and the layout is checked,
so a crafted or damaged file is one line, not a traceback.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import FormatError, InputError
from ..io.atomic import atomic_path
from .official import convert_official, is_official
from .registry import build_model, file_references, model_section

FORMAT = "pointgcn"
VERSION = 1


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """torch.save through a temp file + rename: never a half-written checkpoint."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def save_checkpoint(path: str | Path, model: nn.Module, config: dict,
                    meta: dict | None = None, **extra: Any) -> None:
    """`config` is the run config; its model section is replaced by the model's own resolved
    config, so the file alone rebuilds exactly this model. Weights are stored on the CPU,
    whatever device trained them."""
    config = {**config, "model": dict(model.cfg)}
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"format": FORMAT, "version": VERSION, "config": config,
               "state_dict": state, "meta": meta or {}, **extra}
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
    try:
        check_finite(ckpt)
        if ckpt.get("format") == FORMAT:
            _check_layout(ckpt)
    except FormatError as e:
        raise FormatError(f"{path}: {e}") from None
    return ckpt


def check_finite(obj: Any, where: str = "") -> None:
    """FormatError naming the first tensor (weights, BatchNorm statistics, optimiser state)
    holding NaN or Inf anywhere in a loaded checkpoint or state_dict."""
    if isinstance(obj, torch.Tensor):
        if (obj.is_floating_point() or obj.is_complex()) and not bool(torch.isfinite(obj).all()):
            raise FormatError(f"{where or 'a tensor'} holds NaN or Inf values (a diverged "
                              "or damaged checkpoint); refusing to use it")
        return
    items = obj.items() if isinstance(obj, dict) else (
        enumerate(obj) if isinstance(obj, (list, tuple)) else ())
    for key, value in items:
        check_finite(value, f"{where}/{key}" if where else str(key))


def _check_layout(ckpt: dict) -> None:
    """What every reader of our format relies on: a config mapping with a model section, a
    state_dict of named tensors, a meta mapping."""
    config = ckpt.get("config")
    if not isinstance(config, dict) or not isinstance(config.get("model", {}), dict):
        raise FormatError("the checkpoint has no usable config (a mapping with a "
                          "model section), so its model cannot be rebuilt")
    state = ckpt.get("state_dict")
    if not isinstance(state, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise FormatError("the checkpoint has no state_dict of named tensors")
    meta = ckpt.get("meta", {})
    names = meta.get("class_names") if isinstance(meta, dict) else None
    n_classes = config.get("model", {}).get("n_classes")
    if not isinstance(meta, dict) or not (names is None or (
            isinstance(names, list) and all(isinstance(n, str) for n in names)
            and (n_classes is None or len(names) == n_classes))):
        raise FormatError("the checkpoint's meta must be a mapping, its class_names a list "
                          f"of {n_classes or 'n_classes'} names")


def model_from_checkpoint(ckpt: dict, source: str | Path = "checkpoint",
                          **overrides: Any) -> nn.Module:
    """The model (eval mode) of a checkpoint dict read by `read_checkpoint` — ours or an
    official deep_gcns_torch one — so a caller that also needs its config or meta unpickles the
    file once (pointgcn.export.serve.open_model, the one way to open a model). `overrides` set
    model config keys the official format cannot record (k, conv, block, …); `source` names
    the file in errors."""
    try:
        section, state = _model_and_state(ckpt, overrides)
        model = build_model(section)
    except InputError as e:  # a bad key or size in the stored config: say which file
        raise type(e)(f"{source}: {e}") from None
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shapes that do not fit the configured model
        first = str(e).split("\n\t")[1] if "\n\t" in str(e) else str(e).splitlines()[0]
        raise FormatError(f"{source}: weights do not fit the model ({first.strip()})") from None
    if missing or unexpected:
        raise FormatError(f"{source}: weights do not fit the model "
                          f"(missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]})")
    return model.eval()


def _model_and_state(ckpt: dict, overrides: dict) -> tuple[dict, dict]:
    """(model section to build, state_dict) of our format or the official one."""
    if ckpt.get("format") == FORMAT:
        section = model_section(dict(ckpt["config"]))
        for key, value in file_references(section).items():
            if key not in overrides:
                raise FormatError(
                    f"the checkpoint names its model.{key} by a path ({value}) instead of "
                    f"embedding it (written by an older pointgcn), so it cannot be rebuilt "
                    f"reliably; retrain it, or give the {key} explicitly")
        return {**section, **overrides}, ckpt["state_dict"]
    if is_official(ckpt):
        return convert_official(ckpt, **overrides)
    raise FormatError("neither a pointgcn nor an official DeepGCN checkpoint")
