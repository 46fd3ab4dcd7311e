"""The trainer's end hook that calibrates what it wrote: a temperature per checkpoint.

When training ends, each of `best.pt` and `last.pt` gets the temperature that minimises the
NLL of *its own* weights' logits on the validation split (never the training split, on
which the network is over-confident by construction), plus the ECE/NLL before and after,
in its meta (`temperature`, `calibration`); metrics.json gets the best checkpoint's. The
ECE "after" is measured on the points T was fitted on (said so in the record); `pointgcn
eval` measures it on the test split. Nothing is relearned: labels do not change.

Validation logits of large splits are subsampled (seeded) as they come, to at most
`max_points` points, so S3DIS-sized validation sets never hold every block's logits.
"""
from __future__ import annotations

import copy
import json
import logging

import numpy as np
import torch

from ..models.checkpoint import atomic_torch_save, read_checkpoint
from ..seeds import calibration_subset_rng
from .batches import split_batches
from .calibration import calibration_report, fit_temperature, flatten_logits
from .device import to_device
from .hooks import Hook

log = logging.getLogger(__name__)
MAX_POINTS = 300_000


class TemperatureHook(Hook):
    def __init__(self, max_points: int = MAX_POINTS):
        self.max_points = max_points

    def finish(self, trainer, final: dict) -> None:
        if not trainer.dist.main or not len(trainer.data.val):
            return
        folder = trainer.run_dir / "checkpoints"
        for name in ("best.pt", "last.pt"):
            if not (folder / name).is_file():
                continue
            record = calibrate_checkpoint(trainer, folder / name, self.max_points)
            if name == "best.pt" or "calibration" not in final:
                final["calibration"] = {"checkpoint": name, **record}
        if "calibration" in final:
            c = final["calibration"]
            (trainer.run_dir / "metrics.json").write_text(json.dumps(final, indent=2))
            log.info(f"calibration ({c['checkpoint']}): temperature {c['temperature']:.3f}, "
                     f"validation ECE {c['ece_before']:.4f} → {c['ece_after']:.4f}")
            if c["at_bound"]:
                log.warning(f"the temperature of {c['checkpoint']} is at the end of its range "
                            f"({c['temperature']:.3g}): its probabilities carry little "
                            "information on the validation split")


def validation_logits(trainer, model: torch.nn.Module, max_points: int = MAX_POINTS
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(M, C) logits and (M,) labels of `model` on the validation split (labelled points
    only; at most `max_points`, a seeded subset)."""
    val, ignore = trainer.data.val, trainer.settings["ignore_index"]
    size = trainer.settings["eval_batch_size"] or trainer.state["batch_size"]
    rng = calibration_subset_rng(trainer.seed)
    zs, ys, share = [], [], None
    model.eval()
    with torch.no_grad():
        for feats, labels in trainer._loader(val, split_batches(np.arange(len(val)), size),
                                             trainer.seed):
            if share is None:  # points per item × items: the share to keep as we go
                per_item = int(np.prod(labels.shape[1:])) if labels.dim() > 1 else 1
                share = min(1.0, max_points / max(1, per_item * len(val)))
            logits = model(to_device(feats, trainer.device)).float().cpu().numpy()
            z, y = flatten_logits(logits, labels.numpy(), ignore)
            if trainer.task == "part_segmentation":  # PartNet scores and predicts parts 1…
                z, y = z[y != 0][:, 1:], y[y != 0] - 1
            if share < 1:
                keep = rng.random(len(y)) < share
                z, y = z[keep], y[keep]
            zs.append(z.astype(np.float32))
            ys.append(y)
    z, y = np.concatenate(zs), np.concatenate(ys)
    if len(y) > max_points:
        keep = np.sort(rng.choice(len(y), max_points, replace=False))
        z, y = z[keep], y[keep]
    return z, y


def calibrate_checkpoint(trainer, path, max_points: int = MAX_POINTS) -> dict:
    """Fit the temperature of the checkpoint at `path` on the validation split and record it
    in its meta (rewritten atomically); returns the record."""
    ckpt = read_checkpoint(path)
    model = copy.deepcopy(trainer.model)
    model.load_state_dict(ckpt["state_dict"])
    z, y = validation_logits(trainer, model, max_points)
    t = fit_temperature(z, y)
    record = {**calibration_report(z, y, t), "fitted_on": "validation split",
              "measured_on": "the same validation points (in-sample for the temperature)"}
    ckpt["meta"] = {**ckpt.get("meta", {}), "temperature": t, "calibration": record}
    atomic_torch_save(ckpt, path)
    return record
