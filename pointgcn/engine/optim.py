"""Optimisers, schedulers and the loss, chosen by name from the `train:` config section."""
from __future__ import annotations

import math

import torch
from torch import nn

from ..config import check_int, check_number
from ..errors import ConfigError
from .batches import LAST_BATCH
from .device import amp_name

TRAIN_DEFAULTS = dict(
    epochs=10, batch_size=8, optimizer="adam", lr=1e-3, weight_decay=0.0, momentum=0.9,
    scheduler="cosine", step_size=20, gamma=0.5, min_lr=1e-5, label_smoothing=0.0,
    grad_clip=0.0, amp="none", num_workers=0, ckpt_every_steps=0, val_every=1,
    ignore_index=None, best_metric=None, eval_batch_size=None, restarts=(), sync_bn=False,
    max_batches=None, last_batch="drop",
)


# lr > 0 (an lr of 0 trains nothing), momentum < 1 (1 never forgets a gradient), label
# smoothing ≤ 1 (1 is the uniform target).
FLOAT_RANGES = dict(lr="(0, inf)", min_lr="[0, inf)", weight_decay="[0, inf)",
                    momentum="[0, 1)", gamma="(0, inf)", label_smoothing="[0, 1]",
                    grad_clip="[0, inf)")


def resolve_train(cfg: dict | None) -> dict:
    """The `train:` section with defaults filled; every value checked for type and range."""
    cfg = {} if cfg is None else cfg
    if not isinstance(cfg, dict):
        raise ConfigError(f"the train section must be a mapping of settings, got {cfg!r}")
    unknown = set(cfg) - set(TRAIN_DEFAULTS)
    if unknown:
        raise ConfigError(f"unknown train keys: {', '.join(sorted(unknown))}")
    t = {**TRAIN_DEFAULTS, **cfg}
    for key in ("epochs", "batch_size", "num_workers", "ckpt_every_steps", "val_every",
                "step_size"):
        check_int(t, key, "train", minimum=0 if key in ("num_workers", "ckpt_every_steps") else 1)
    check_int(t, "max_batches", "train")  # a cap on training batches per epoch (None: all)
    for key, interval in FLOAT_RANGES.items():
        check_number(t, key, "train", interval, allow_none=False)
    t["amp"] = amp_name(t["amp"])
    if not isinstance(t["sync_bn"], bool):
        raise ConfigError(f"train.sync_bn must be true or false, got {t['sync_bn']!r}")
    if t["last_batch"] not in LAST_BATCH:
        raise ConfigError(f"train.last_batch must be one of {LAST_BATCH}, got "
                          f"{t['last_batch']!r}")
    r = t["restarts"]
    if not (isinstance(r, (list, tuple)) and all(
            isinstance(e, int) and not isinstance(e, bool) for e in r)
            and list(r) == sorted(set(r)) and all(0 < e < t["epochs"] for e in r)):
        raise ConfigError(f"train.restarts must be increasing epochs between 0 and "
                          f"train.epochs={t['epochs']}, got {r!r}")
    t["restarts"] = list(r)
    return t


def make_optimizer(params, t: dict) -> torch.optim.Optimizer:
    name = t["optimizer"].lower()
    if name == "adam":
        return torch.optim.Adam(params, lr=t["lr"], weight_decay=t["weight_decay"])
    if name == "adamw":
        return torch.optim.AdamW(params, lr=t["lr"], weight_decay=t["weight_decay"])
    if name == "sgd":
        return torch.optim.SGD(params, lr=t["lr"], momentum=t["momentum"],
                               weight_decay=t["weight_decay"])
    raise ConfigError(f"train.optimizer must be adam, adamw or sgd; got {name!r}")


def lr_factor(epoch: int, t: dict) -> float:
    """The LR of `epoch` over train.lr, a closed form of the epoch alone (so a scheduler is
    restored from its epoch, whatever object saved it):
    cosine  from lr to min_lr over [0, epochs), starting over at each of train.restarts
            (warm restarts: each segment anneals from lr to min_lr over its own epochs)
    step    × gamma every step_size epochs;  none  1."""
    name = (t["scheduler"] or "none").lower()
    if name == "cosine":
        start = max([0, *(e for e in t["restarts"] if e <= epoch)])
        end = min([t["epochs"], *(e for e in t["restarts"] if e > epoch)])
        frac = min((epoch - start) / max(end - start, 1), 1.0)
        lr = t["min_lr"] + (t["lr"] - t["min_lr"]) * (1 + math.cos(math.pi * frac)) / 2
        return lr / t["lr"]
    if name == "step":
        return t["gamma"] ** (epoch // t["step_size"])
    if name == "none":
        return 1.0
    raise ConfigError(f"train.scheduler must be cosine, step or none; got {name!r}")


def make_scheduler(opt, t: dict):
    """Stepped once per epoch; `restore_scheduler` puts it at a saved epoch."""
    lr_factor(0, t)  # an unknown name fails here
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: lr_factor(epoch, t))


def restore_scheduler(sched, state: dict) -> None:
    """Continue at the epoch a saved scheduler state reached (any of our scheduler kinds),
    with the LR the (possibly lengthened) schedule gives that epoch."""
    sched.last_epoch = int(state["last_epoch"])
    for group, base, factor in zip(sched.optimizer.param_groups, sched.base_lrs,
                                   sched.lr_lambdas):
        group["lr"] = base * factor(sched.last_epoch)
    sched._last_lr = [group["lr"] for group in sched.optimizer.param_groups]


def extend_schedule(t: dict, planned_epochs: int) -> None:
    """A run planned for `planned_epochs` lengthened to t["epochs"]: a cosine schedule starts
    over at the old end (a warm restart, recorded in train.restarts, so the lengthened run
    equals one configured that way from the start); step and none do not depend on length.
    A shortened run (fewer epochs than planned; never fewer than it has started) gets no
    restart: its cosine anneals to the new end. A restart already recorded (a resume of an
    extension killed before its first checkpoint) is not added twice."""
    if ((t["scheduler"] or "none").lower() == "cosine" and planned_epochs < t["epochs"]
            and planned_epochs not in t["restarts"]):
        t["restarts"] = sorted([*t["restarts"], planned_epochs])


def drop_unreached_restarts(t: dict | None) -> None:
    """A resumed run's `train:` section (raw, from its config.yaml) given fewer epochs: warm
    restarts at or past the new end never happen, so they leave the record (an extension
    killed before its first checkpoint, then resumed shorter)."""
    if isinstance(t, dict) and isinstance(t.get("restarts"), list) and isinstance(
            t.get("epochs"), int):
        t["restarts"] = [e for e in t["restarts"] if not (isinstance(e, int) and
                                                          e >= t["epochs"])]


def make_loss(t: dict) -> nn.Module:
    ignore = t["ignore_index"] if t["ignore_index"] is not None else -100
    return nn.CrossEntropyLoss(label_smoothing=t["label_smoothing"], ignore_index=ignore)
