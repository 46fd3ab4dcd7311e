"""Optimisers, schedulers and the loss, chosen by name from the `train:` config section."""
from __future__ import annotations

import torch
from torch import nn

from ..config import check_int, check_number
from ..errors import ConfigError

TRAIN_DEFAULTS = dict(
    epochs=10, batch_size=8, optimizer="adam", lr=1e-3, weight_decay=0.0, momentum=0.9,
    scheduler="cosine", step_size=20, gamma=0.5, min_lr=1e-5, label_smoothing=0.0,
    grad_clip=0.0, amp=False, num_workers=0, ckpt_every_steps=0, val_every=1,
    ignore_index=None, best_metric=None, eval_batch_size=None,
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
    for key, interval in FLOAT_RANGES.items():
        check_number(t, key, "train", interval, allow_none=False)
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


def make_scheduler(opt, t: dict):
    """Stepped once per epoch."""
    name = (t["scheduler"] or "none").lower()
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=t["epochs"], eta_min=t["min_lr"])
    if name == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=t["step_size"], gamma=t["gamma"])
    if name == "none":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    raise ConfigError(f"train.scheduler must be cosine, step or none; got {name!r}")


def schedule_depends_on_length(t: dict) -> bool:
    """Whether the LR of an epoch depends on train.epochs (cosine anneals over all of them),
    so a run cannot be lengthened without changing the epochs it has already trained."""
    return (t["scheduler"] or "none").lower() == "cosine"


def make_loss(t: dict) -> nn.Module:
    ignore = t["ignore_index"] if t["ignore_index"] is not None else -100
    return nn.CrossEntropyLoss(label_smoothing=t["label_smoothing"], ignore_index=ignore)
