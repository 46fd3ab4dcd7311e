"""Few-label adaptation: a segmentation model re-headed for a user's own scan and classes.

The backbone stays frozen. It runs once over the whole scan (the model's blocks, every point
drawn at least once) and the input of the model's last layer — its per-point features — is
averaged over the samples that drew each *labelled* point, so memory grows with the labels,
not the scan. A new last layer (logistic regression on those features, full-batch Adam) is fitted
on most of the labelled points and scored on the rest; when the user's classes are the model's
own, it starts from the model's layer, is held near it (an L2 pull of strength `anchor` on the
weights, the biases free: with ~200 labels of one room a free layer learns that room's class
mix and loses on other rooms, measured in docs/adaptation.md), and is compared with it on the
same held-out points. The
new layer's temperature is fitted on the held-out points (calibrated confidence). The
result is an ordinary checkpoint of the same architecture with `n_classes` set to the new class
list, so segment, eval, export and bench take it as they take any other.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from ..data.build import SampleSettings
from ..data.rooms import iter_blocks, plan_blocks
from ..errors import InputError, Setting
from ..io.cloud import PointCloud
from ..models import build_model
from ..models.heads import FusionHead
from .calibration import calibration_report, fit_temperature
from .device import describe_device, resolve_device, to_device
from .inference import cover_logits
from .metrics import ConfusionMatrix

MIN_LABELLED = 50          # labelled points in all; fewer cannot train and validate a head
MIN_PER_CLASS = 5          # per class in the training part of the labels


@dataclass
class Adapted:
    model: torch.nn.Module
    class_names: list[str]
    metrics: dict = field(default_factory=dict)  # held-out OA / mIoU, before and after
    temperature: float = 1.0  # fitted on the held-out labelled points (calibration.py)


def last_layer(model: torch.nn.Module) -> torch.nn.Module:
    """The classifier layer (features → logits) of a model's fusion head."""
    heads = [m for m in model.modules() if isinstance(m, FusionHead)]
    if not heads:
        raise InputError("this model has no DeepGCN fusion head to re-train")
    return heads[-1].prediction[-1]


class FeatureTap:
    """Features `(B, C, N)` → the model's per-point features at its last layer `(B, F, N)`,
    computed on `device` (one copy each way per batch)."""

    def __init__(self, model: torch.nn.Module, device: torch.device = torch.device("cpu")):
        self.model, self.last, self.device = model.eval().to(device), last_layer(model), device
        self.width = self.last.lin.in_features

    @torch.no_grad()
    def __call__(self, feats: np.ndarray) -> np.ndarray:
        seen = {}
        hook = self.last.register_forward_hook(lambda m, inp, out: seen.setdefault("x", inp[0]))
        try:
            x = torch.from_numpy(np.ascontiguousarray(feats, np.float32))
            self.model(to_device(x, self.device))
        finally:
            hook.remove()
        return seen["x"].float().cpu().numpy()


def point_features(cloud: PointCloud, tap: FeatureTap, settings: SampleSettings, task: str,
                   wanted: np.ndarray, batch: int = 8, seed: int = 0,
                   progress: bool = False) -> np.ndarray:
    """(len(wanted), F) mean features of the points `wanted` (indices into `cloud`)."""
    if task == "part_segmentation":
        pts = cloud.points.astype(np.float64)
        lo, hi = pts.min(0), pts.max(0)
        pts = (pts - (lo + hi) / 2) / max(float(np.linalg.norm(hi - lo)), 1e-12)
        tap.n_classes = tap.width  # cover_logits sums any per-point vectors
        return cover_logits(pts, tap, settings.n_points, batch, seed)[wanted]
    row = np.full(len(cloud), -1, dtype=np.int64)
    row[wanted] = np.arange(len(wanted))
    sums = np.zeros((len(wanted), tap.width), dtype=np.float64)
    counts = np.zeros(len(wanted), dtype=np.int64)
    plan = plan_blocks(cloud.points, settings.block, settings.stride, settings.n_points)
    blocks = iter_blocks(cloud, plan, batch, settings.position_norm, cover_all=True, seed=seed)
    if progress:
        total = int(plan.samples_per_block(True).sum())
        blocks = tqdm(blocks, total=-(-total // batch), desc="features", unit="batch")
    for feats, index in blocks:
        out = tap(feats).transpose(0, 2, 1).reshape(-1, tap.width)
        rows = row[index.reshape(-1)]
        keep = rows >= 0
        np.add.at(sums, rows[keep], out[keep])
        np.add.at(counts, rows[keep], 1)
    return (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)


def split_labels(labels: np.ndarray, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, held out) of the labelled points (label ≥ 0), a random `holdout`
    fraction held out."""
    labelled = np.flatnonzero(labels >= 0)
    if len(labelled) < MIN_LABELLED:
        raise InputError(f"{len(labelled)} labelled points; adaptation needs at least "
                         f"{MIN_LABELLED} (label −1 marks unlabelled points)")
    perm = np.random.default_rng(seed).permutation(labelled)
    n_out = max(1, int(round(holdout * len(perm))))
    return np.sort(perm[n_out:]), np.sort(perm[:n_out])


def check_range(labels: np.ndarray, names: list[str]) -> None:
    """No label (≥ 0: labelled) beyond the class list: checked on every labelled point
    before the split, so a held-out point cannot carry a label the layer has no class for."""
    labelled = labels[labels >= 0]
    if len(labelled) and labelled.max() >= len(names):
        raise InputError("label {label} is beyond the {n} classes (give {classes} with a name "
                         "per label)", label=int(labelled.max()), n=len(names),
                         classes=Setting("classes", "class_names"))


def check_classes(labels: np.ndarray, names: list[str], every: bool) -> None:
    """Enough examples in the training part of the labels. A new class list (`every`) needs
    MIN_PER_CLASS examples of every class: its layer starts from nothing. The model's own
    classes start from the model's layer, so any labelled class helps and classes absent
    from the scan are fine, but at least two classes must be labelled (after check_range)."""
    counts = np.bincount(labels, minlength=len(names))
    if not every:
        if (counts > 0).sum() < 2:
            raise InputError("the labels name one class only; adaptation needs at least two")
        return
    few = [f"{names[c]} ({counts[c]})" for c in range(len(names)) if counts[c] < MIN_PER_CLASS]
    if few:
        raise InputError(f"classes without enough labelled examples (≥ {MIN_PER_CLASS} each to "
                         f"train on): {', '.join(few[:4])}{' …' if len(few) > 4 else ''}")


def fit_layer(x: np.ndarray, y: np.ndarray, n_classes: int, init: torch.nn.Linear | None,
              steps: int = 300, lr: float = 0.01, anchor: float = 0.3,
              weight_decay: float = 1e-4, seed: int = 0) -> torch.nn.Linear:
    """Logistic regression on fixed features (full-batch Adam, deterministic for `seed`):
    from `init` with its weights pulled towards it (`anchor` · ‖W − W_init‖²), or from
    scratch with weight decay."""
    torch.manual_seed(seed)
    layer = torch.nn.Linear(x.shape[1], n_classes)
    if init is not None:
        layer.load_state_dict(init.state_dict())
        start = init.weight.detach().clone()
    opt = torch.optim.Adam(layer.parameters(), lr=lr)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(layer(xt), yt)
        if init is not None:
            loss = loss + anchor * ((layer.weight - start) ** 2).sum()
        else:
            loss = loss + weight_decay * (layer.weight ** 2).sum()
        loss.backward()
        opt.step()
    return layer


def score(layer: torch.nn.Linear, x: np.ndarray, y: np.ndarray, n_classes: int) -> dict:
    with torch.no_grad():
        pred = layer(torch.from_numpy(x)).argmax(1).numpy()
    cm = ConfusionMatrix(n_classes).update(pred, y)
    return {"oa": cm.oa(), "miou": cm.miou(), "points": int(len(y))}


def adapt(model: torch.nn.Module, cloud: PointCloud, labels: np.ndarray, class_names: list[str],
          settings: SampleSettings, task: str, same_classes: bool, holdout: float = 0.2,
          steps: int = 300, anchor: float = 0.3, batch: int = 8, seed: int = 0,
          progress: bool = False, device: str | None = "cpu") -> Adapted:
    """Fit a new last layer for `class_names` on the labelled points of `cloud` (module doc).
    The backbone runs on `device`; the small layer is fitted on the CPU (same result on any
    device)."""
    if task not in ("segmentation", "part_segmentation"):
        raise InputError(f"adaptation re-heads segmentation models; this one is a {task} model")
    check_range(labels, class_names)
    train, held = split_labels(labels, holdout, seed)
    check_classes(labels[train], class_names, every=not same_classes)
    tap = FeatureTap(model, resolve_device(device))
    wanted = np.concatenate([train, held])
    feats = point_features(cloud, tap, settings, task, wanted, batch, seed, progress)
    model.cpu()
    x_train, x_held = feats[:len(train)], feats[len(train):]
    old = tap.last.lin
    n = len(class_names)
    layer = fit_layer(x_train, labels[train], n, old if same_classes else None, steps,
                      anchor=anchor, seed=seed)
    metrics = {"after": score(layer, x_held, labels[held], n),
               "labelled": int(len(train) + len(held)), "trained_on": int(len(train)),
               "backbone_device": describe_device(tap.device)}
    if same_classes:
        metrics["before"] = score(old, x_held, labels[held], n)
    with torch.no_grad():
        held_logits = layer(torch.from_numpy(x_held)).double().numpy()
    temperature = fit_temperature(held_logits, labels[held])
    metrics["calibration"] = {**calibration_report(held_logits, labels[held], temperature),
                              "fitted_on": "held-out labelled points",
                              "measured_on": "the same held-out points (in-sample for the "
                                             "temperature)"}
    cfg = {**model.cfg, "n_classes": n}
    new = build_model({"model": cfg}).eval()
    state = model.state_dict()
    prefix = next(k for k, v in model.named_modules() if v is tap.last)
    state[f"{prefix}.lin.weight"] = layer.weight.detach().clone()
    state[f"{prefix}.lin.bias"] = layer.bias.detach().clone()
    new.load_state_dict(state)
    return Adapted(new, list(class_names), metrics, temperature)
