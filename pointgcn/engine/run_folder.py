"""A run's folder: made in one place, removed in one place, and what a resume must match.

Every run (training, an architecture search, LC-NAS's final training) writes config.yaml,
metrics.jsonl, metrics.json, checkpoints/ and tb/ here, plus its hooks' files. A new run that
fails before its first checkpoint leaves nothing behind (there is nothing to resume from):
the folder goes if the run made it, else only what the run wrote.

A resumed run must be the run that stopped, or it would not end where an uninterrupted one
does: the same config (but `train.epochs`, which may extend it, and `device`), process count,
intra-op thread count (matmul and norm kernels split their sums by it) and kind of device (the
CPU or the same GPU model: kernels differ between them).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from ..config import dump_config
from ..errors import InputError, Setting
from .device import DEVICE, same_kind

LAST = Path("checkpoints") / "last.pt"
OWN_FILES = ("config.yaml", "metrics.jsonl", "metrics.json")
OWN_FOLDERS = ("tb", "checkpoints")
# Config keys a resume may change: the length of the run (an extension) and the device
# string (its kind is compared instead).
MAY_CHANGE = ("train.epochs", "train.restarts", "device")


def last_checkpoint(run_dir: str | Path) -> Path:
    return Path(run_dir) / LAST


def holds_run(run_dir: str | Path) -> bool:
    """Whether `run_dir` holds a run that can be resumed."""
    return last_checkpoint(run_dir).is_file()


def check_new(run_dir: str | Path) -> None:
    """A new run never goes into a folder holding one (it would replace its checkpoints)."""
    if holds_run(run_dir):
        raise InputError("{run_dir} already holds a run; continue it with {resume} or choose "
                         "another {out}", run_dir=run_dir, resume=Setting("resume", "resume=True"),
                         out=Setting("out", "run folder"))


class RunFolder:
    def __init__(self, path: str | Path, hook_files=()):
        self.path = Path(path)
        self.existed = self.path.exists()
        self.hook_files = tuple(hook_files)

    def create(self, cfg: dict) -> None:
        """The folder of a new run: its resolved config and an empty log."""
        (self.path / "checkpoints").mkdir(parents=True, exist_ok=True)
        dump_config(cfg, self.path / "config.yaml")
        (self.path / "metrics.jsonl").unlink(missing_ok=True)

    def discard(self) -> None:
        """Remove a new run that failed before its first checkpoint (see the module doc)."""
        if holds_run(self.path):
            return  # resumable: keep it
        if not self.existed:
            shutil.rmtree(self.path, ignore_errors=True)
            return
        for name in OWN_FILES + self.hook_files:
            (self.path / name).unlink(missing_ok=True)
        for name in OWN_FOLDERS:
            shutil.rmtree(self.path / name, ignore_errors=True)


def check_resume(path: Path, state: dict, saved_config: dict, config: dict, world: int,
                 device: dict) -> None:
    """One-line InputError unless the checkpoint at `path` (train state `state`) was written
    by this run (module doc). Checkpoints written before threads and devices were recorded
    skip those two checks."""
    if state["world"] != world:
        raise InputError(f"{path}: saved with {state['world']} processes, resuming with "
                         f"{world}; resume with the same process count")
    threads = torch.get_num_threads()
    if state.get("threads", threads) != threads:
        raise InputError("{path}: saved with {threads} {saved}, resuming with {now}; give "
                         "{threads} {saved} (results differ across thread counts)", path=path,
                         threads=Setting("threads", "torch threads"), saved=state["threads"],
                         now=threads)
    if not same_kind(state.get("device"), device):
        saved = state["device"]
        raise InputError("{path}: saved on {saved} ({saved_name}), resuming on {now} "
                         "({now_name}); resume on the same kind of device ({device} {kind})",
                         path=path, saved=saved["device"], saved_name=saved["name"],
                         now=device["device"], now_name=device["name"], device=DEVICE,
                         kind=saved["type"])
    differ = [d for d in differences(plain(saved_config), plain(config))
              if not d.startswith(tuple(key + ":" for key in MAY_CHANGE))]
    if differ:
        raise InputError(f"{path.parent.parent} was run with another config "
                         f"({'; '.join(differ[:3])}{'; …' if len(differ) > 3 else ''}); resume "
                         "with the config, overrides and options it started with")


def plain(obj):
    """JSON's view of a config (tuples → lists, other values as text), the form compared."""
    return json.loads(json.dumps(obj, default=str))


def differences(old, new, prefix: str = "") -> list[str]:
    """`key: old → new` for every dotted key whose value differs."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            out += differences(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    return [] if old == new else [f"{prefix[:-1]}: {old!r} → {new!r}"]
