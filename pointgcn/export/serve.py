"""The one way to open a model, and which model serves a task when none is named.

`open_model(spec)` takes what every stage accepts as a model: a checkpoint path (any suffix or
none; ours or an official deep_gcns_torch one), a shipped model's name (hash-verified), an
.onnx file, and — with `random_weights=True`, for export and speed work before training — a
config YAML or `overrides` alone. It returns a `LoadedModel`: the PyTorch module or the
onnxruntime session, the run config the model was trained with (its `data:` section carries
the sampling, so pre-processing matches training), the file's meta and the class names; its
`predictor()` runs the model behind the `Predictor` interface, its logits divided by the
temperature the file records (engine/calibration.py; 1.0 for files that record none). A
checkpoint is unpickled once per open. A latency budget chooses among candidates in budget.py, which opens its choice here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import torch
from torch import nn

from ..config import apply_overrides, load_config
from ..data.classes import default_class_names
from ..engine.calibration import temperature_of
from ..engine.predictor import Predictor, TorchPredictor
from ..errors import InputError, Setting
from ..models import build_model
from ..models.checkpoint import FORMAT, model_from_checkpoint, read_checkpoint
from ..models.weights import read_manifest, resolve_weights
from .runtime import OnnxPredictor, providers_for

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".tar")
CONFIG_SUFFIXES = (".yaml", ".yml")


@dataclass
class LoadedModel:
    """A model ready to run, with what it was trained on."""
    label: str                              # a short name for tables and files (a stem)
    name: str = ""                          # what its predictions are attributed to
    module: nn.Module | None = None         # PyTorch model in eval mode, on the CPU
    session: OnnxPredictor | None = None    # onnxruntime, for an .onnx file
    path: Path | None = None                # the file it came from
    run_config: dict = field(default_factory=dict)  # `model:` is the model as built
    meta: dict = field(default_factory=dict)  # what the file records (class names, card, …)
    device: str | None = "cpu"              # where `predictor()` runs the module (None: auto)
    threads: int | None = None

    @property
    def class_names(self) -> list[str]:
        """The recorded class names, else the defaults for the model's task and class count."""
        if self.session is not None:
            return self.session.class_names
        recorded = self.meta.get("class_names")
        return list(recorded) if recorded else default_class_names(self.run_config["model"])

    def predictor(self) -> Predictor:
        """The model behind the `Predictor` interface (the module moves to `device`)."""
        if self.session is not None:
            return self.session
        return TorchPredictor(self.module, name=self.name or self.label, threads=self.threads,
                              class_names=self.class_names, device=self.device or "auto",
                              temperature=temperature_of(self.meta))


def open_model(spec: str | Path | None, *, overrides: Mapping | Iterable[str] = (),
               random_weights: bool = False, seed: int = 0, device: str | None = "cpu",
               provider: str | None = None, threads: int | None = None,
               label: str | None = None) -> LoadedModel:
    """Open `spec` (module doc). `overrides` set model config keys ({"k": 9} or "k=9" strings;
    the official format cannot record k, conv, block, …); `random_weights` also accepts a
    config YAML, or `spec=None` with `overrides` alone, built with random weights drawn from
    `seed`. The module runs on `device` (None: auto), an .onnx file in onnxruntime on
    `provider` (default: following `device`), each with `threads` intra-op threads."""
    extra = (dict(overrides) if isinstance(overrides, Mapping)
             else apply_overrides({}, list(overrides or ())))
    opened = dict(device=device, threads=threads)
    if spec is None:
        if not (random_weights and extra):
            raise InputError("give a model (checkpoint, config YAML or .onnx), or model config "
                             "overrides to build one with random weights")
        return _from_config({"model": extra}, label or "model", seed, opened)
    path = weights_file(spec, configs=random_weights)
    suffix = path.suffix.lower()
    label = label or path.stem
    if suffix == ".onnx":
        if extra:
            raise InputError("{overrides} cannot change an .onnx model",
                             overrides=Setting("overrides", "config overrides"))
        session = OnnxPredictor(path, threads=threads, providers=providers_for(provider, device))
        run_config = {**session.config, "model": session.config.get("model", {})}
        return LoadedModel(label, session.name, session=session, path=path,
                           run_config=run_config, meta=session.metadata, **opened)
    if suffix in CONFIG_SUFFIXES:
        cfg = load_config(path)
        cfg["model"] = {**(cfg.get("model") or {}), **extra}
        return _from_config(cfg, label, seed, opened, path)
    ckpt = read_checkpoint(path)
    module = model_from_checkpoint(ckpt, path, **extra)
    run_config = dict(ckpt.get("config") or {}) if ckpt.get("format") == FORMAT else {}
    run_config["model"] = dict(module.cfg)
    meta = dict(ckpt.get("meta") or {})
    if isinstance(meta.get("conventions"), dict):  # what the model was trained on (harmonise)
        run_config["conventions"] = meta["conventions"]
    return LoadedModel(label, str(spec), module=module, path=path, run_config=run_config,
                       meta=meta, **opened)


def _from_config(cfg: dict, label: str, seed: int, opened: dict,
                 path: Path | None = None) -> LoadedModel:
    torch.manual_seed(seed)
    module = build_model(cfg).eval()
    return LoadedModel(label, label, module=module, path=path, run_config=cfg, **opened)


def weights_file(spec: str | Path, configs: bool = False) -> Path:
    """The file `spec` names: an existing file (any name, with or without suffix), else a
    shipped model (hash-verified); a checkpoint or an .onnx file — or, with `configs`, a config
    YAML. A folder, a missing .onnx and other suffixes are refused."""
    path = Path(spec)
    if path.is_dir():
        raise InputError(f"{path} is a directory, not a model file")
    if not path.is_file():
        if path.suffix.lower() == ".onnx":
            raise InputError(f"ONNX model not found: {path}")
        path = Path(resolve_weights(spec))
    suffix = path.suffix.lower()
    if suffix in CONFIG_SUFFIXES and not configs:
        raise InputError(f"{path}: a config YAML has no trained weights; give a checkpoint, "
                         "a shipped model name or an .onnx file")
    known = CHECKPOINT_SUFFIXES + (CONFIG_SUFFIXES if configs else ()) + (".onnx",)
    if suffix and suffix not in known:
        kinds = f", a config ({', '.join(CONFIG_SUFFIXES)}) or .onnx" if configs else " or .onnx"
        raise InputError(f"{path}: unknown model file type {suffix}; expected a checkpoint "
                         f"({', '.join(CHECKPOINT_SUFFIXES)}){kinds}")
    return path


def default_model(task: str) -> str | None:
    """The shipped model that serves `task` when none is named: the manifest entry marked
    `"default": true` for the task, else the task's first entry; None if none is shipped."""
    entries = [m for m in read_manifest() if m.get("task") == task]
    if not entries:
        return None
    return next((m for m in entries if m.get("default")), entries[0])["name"]
