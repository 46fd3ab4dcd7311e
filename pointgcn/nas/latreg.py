"""LatReg: LC-NAS's 3-layer MLP from the 9×10 architecture encoding to latency (ms).

Input: the flattened one-hot encoding (90,), plus the network size (cells, width, points, k)
for those that vary across the training rows, standardised. Output: latency in ms. Trained
full-batch with Adam on the squared *relative* error ((ŷ − y)/y)², the loss that matches the
MAPE the regressor is judged by, on a random split by architecture (repeated measurements of
one encoding + sizes stay on one side); the held-out part is only used to report
MAE / MAPE (and the MAPE of always predicting the mean training latency, the trivial baseline).

Drift normalisation: when every row carries `reference_ms` (see latency.py), targets are
y = latency · R / reference_ms with R the median reference latency of the training rows, i.e. each
latency as if the machine had been in its typical state. Measurements compared with the
regressor later go through the same map (`normalise_ms`). R is stored with the model.

File (torch, loads with weights_only=True): {"format": "pointgcn-latreg", "version": 1,
"state_dict", "hidden", "extra_keys", "config" (the network config keys that were constant),
"varying" (the values seen of the others), "runtime",
"device", "reference_ms" (or None), "latency_range_ms" ([min, max] of the training targets, ms),
"metrics"}.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, FormatError, InputError
from ..models.checkpoint import atomic_torch_save, read_checkpoint
from .genotype import ENCODING_DIM
from .latency import torch_threads
from .latency_file import CONFIG_DEFAULTS

FORMAT = "pointgcn-latreg"
SIZE_KEYS = ("cells", "width", "points", "k")
# Fewest distinct architectures `fit` accepts. The MLP reads a 90-entry one-hot (9 edges ×
# 10 ops); with fewer architectures than inputs even a linear map fits the training rows
# exactly (5 rows: train MAPE 0.09 %, held-out 11.9 %), and the held-out error of a handful of
# rows is noise. 100 also leaves 20 held out at the default split.
MIN_ARCHITECTURES = 100


class LatReg(nn.Module):
    def __init__(self, hidden: int = 64, extra_keys: tuple = ()):
        super().__init__()
        self.hidden, self.extra_keys = hidden, tuple(extra_keys)
        n_in = ENCODING_DIM + len(self.extra_keys)
        self.net = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                                 nn.ReLU(), nn.Linear(hidden, 1))
        self.register_buffer("extra_mean", torch.zeros(len(self.extra_keys)))
        self.register_buffer("extra_std", torch.ones(len(self.extra_keys)))
        self.register_buffer("y_mean", torch.zeros(()))
        self.register_buffer("y_std", torch.ones(()))

    def forward(self, encoding: torch.Tensor, extras: torch.Tensor | None = None) -> torch.Tensor:
        """encoding (B, 90) or (90,), extras (B, n_extra) raw → latency ms (B,) or ()."""
        single = encoding.dim() == 1
        x = encoding.reshape(-1, ENCODING_DIM).float()
        if self.extra_keys:
            if extras is None:
                raise ConfigError(f"this regressor also needs {', '.join(self.extra_keys)}")
            e = torch.as_tensor(extras, dtype=x.dtype).reshape(x.shape[0], -1)
            x = torch.cat([x, (e - self.extra_mean) / self.extra_std], dim=1)
        y = self.y_mean + self.y_std * self.net(x).squeeze(-1)
        return y[0] if single else y

    def extras_for(self, config: dict) -> torch.Tensor | None:
        if not self.extra_keys:
            return None
        missing = [k for k in self.extra_keys if k not in config]
        if missing:
            raise ConfigError(f"latency regressor needs {', '.join(missing)} of the network")
        return torch.tensor([float(config[k]) for k in self.extra_keys])


def normalise_ms(latency_ms, reference_ms, data_reference_ms):
    """A latency measured next to the reference architecture, mapped to the data's typical
    machine state (identity when either reference is missing)."""
    if reference_ms is None or data_reference_ms is None:
        return latency_ms
    return latency_ms * data_reference_ms / reference_ms


def rows_to_arrays(rows: list[dict], normalise: bool = True):
    """(encodings (n, 90), size configs (n, 4), latencies (n,), meta) from latency rows; meta
    "refs" holds the rows' reference timings when every row has one and `normalise`."""
    runtimes = {r["runtime"] for r in rows}
    devices = {(r.get("device") or {}).get("id") for r in rows}
    if len(runtimes) > 1 or len(devices) > 1:
        raise InputError(f"rows mix runtimes {sorted(runtimes)} / devices {sorted(map(str, devices))}"
                         "; fit one regressor per device and runtime")
    configs = [{**CONFIG_DEFAULTS, **r["config"]} for r in rows]  # keys a row leaves out
    fixed = {k: v for k, v in configs[0].items() if k not in SIZE_KEYS}
    for c in configs:
        differ = sorted(k for k in set(c) | set(fixed)
                        if k not in SIZE_KEYS and c.get(k) != fixed.get(k))
        if differ:
            raise InputError(f"rows differ in {', '.join(differ)}; only cells/width/points/k "
                             "may vary within one regressor")
    enc = np.array([r["encoding"] for r in rows], np.float32)
    sizes = np.array([[c[k] for k in SIZE_KEYS] for c in configs], np.float64)
    y = np.array([r["latency_ms"] for r in rows], np.float64)
    refs = [r.get("reference_ms") for r in rows]
    if not (normalise and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
                              for v in refs)):
        refs = None
    meta = {"runtime": runtimes.pop(), "device": rows[0].get("device"), "fixed": fixed,
            "refs": refs}
    return enc, sizes, y, meta


def grouped_split(enc: np.ndarray, sizes: np.ndarray, holdout: float, seed: int,
                  min_architectures: int = MIN_ARCHITECTURES):
    """(held-out, train) row indices; rows of one architecture (encoding + sizes) stay on one
    side, so a repeated measurement never tests the regressor on what it trained on."""
    _, group = np.unique(np.concatenate([enc, sizes], axis=1), axis=0, return_inverse=True)
    group = group.reshape(-1)
    n_groups = int(group.max()) + 1
    if n_groups < min_architectures:
        raise InputError(f"{n_groups} distinct architectures ({len(group)} rows) are too few to "
                         f"fit the latency regressor: it needs ≥ {min_architectures}, as it reads "
                         f"{ENCODING_DIM} one-hot inputs and with fewer architectures it fits its "
                         "training rows exactly, so neither error says how it prices a new cell "
                         "(collect more with `pointgcn latency collect`)")
    n_hold = max(1, int(round(holdout * n_groups)))
    if n_groups - n_hold < 2:
        raise InputError(f"{n_groups} distinct architectures are too few to fit and hold out "
                         f"{n_hold}")
    held = np.random.default_rng(seed).permutation(n_groups)[:n_hold]
    is_hold = np.isin(group, held)
    return np.flatnonzero(is_hold), np.flatnonzero(~is_hold)


def fit(rows: list[dict], holdout: float = 0.2, seed: int = 0, hidden: int = 64,
        steps: int = 2000, lr: float = 3e-3, weight_decay: float = 1e-4,
        normalise: bool = True, min_architectures: int = MIN_ARCHITECTURES
        ) -> tuple[LatReg, dict]:
    """Train on a random (1 − holdout) of the rows; report metrics on both parts. Fewer than
    `min_architectures` distinct architectures are refused (see MIN_ARCHITECTURES)."""
    if not 0 < holdout < 1:
        raise ConfigError(f"holdout must be in (0, 1), got {holdout}")
    enc, sizes, y, meta = rows_to_arrays(rows, normalise)
    n = len(y)
    hold, train = grouped_split(enc, sizes, holdout, seed, min_architectures)
    n_hold = len(hold)
    refs = meta.pop("refs")
    meta["reference_ms"] = None
    if refs is not None:  # the typical machine state, from the training rows only
        refs = np.asarray(refs, np.float64)
        meta["reference_ms"] = float(np.median(refs[train]))
        y = y * meta["reference_ms"] / refs
    # the latencies it has seen: a target below them asks for a cell it cannot price
    meta["latency_range_ms"] = [float(y[train].min()), float(y[train].max())]
    varying = [i for i, k in enumerate(SIZE_KEYS) if np.unique(sizes[:, i]).size > 1]
    keys = tuple(SIZE_KEYS[i] for i in varying)
    meta["config"] = {**meta.pop("fixed"), **{k: int(sizes[0, i]) for i, k in enumerate(SIZE_KEYS)
                                             if i not in varying}}
    meta["varying"] = {k: sorted(int(v) for v in np.unique(sizes[:, SIZE_KEYS.index(k)]))
                       for k in keys}
    torch.manual_seed(seed)
    model = LatReg(hidden, keys)
    ex = torch.tensor(sizes[:, varying], dtype=torch.float32)
    if keys:
        model.extra_mean.copy_(ex[train].mean(0))
        model.extra_std.copy_(ex[train].std(0).clamp_min(1e-6))
    yt = torch.tensor(y, dtype=torch.float32)
    model.y_mean.fill_(float(yt[train].mean()))
    model.y_std.fill_(float(yt[train].std().clamp_min(1e-6)) if len(train) > 1 else 1.0)
    x = torch.tensor(enc)
    opt = torch.optim.Adam(model.net.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=lr * 0.01)
    tr = torch.as_tensor(train)
    extras = ex[tr] if keys else None
    with torch_threads(1):  # a tiny MLP: more threads only add contention
        for _ in range(steps):
            pred = model(x[tr], extras)
            loss = (((pred - yt[tr]) / yt[tr]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    with torch.no_grad():
        pred = model(x, ex if keys else None).numpy().astype(np.float64)
    report = {"n_rows": n, "n_train": int(len(train)), "n_holdout": int(n_hold),
              "train": _errors(y[train], pred[train]), "holdout": _errors(y[hold], pred[hold]),
              "baseline_holdout_mape": float(np.mean(np.abs(y[train].mean() - y[hold]) / y[hold])
                                             * 100),
              "holdout_by_sampling": _by_sampling(rows, hold, y, pred),
              "normalised_by_reference": meta["reference_ms"] is not None,
              "extra_keys": list(keys), "runtime": meta["runtime"]}
    model.meta = meta
    model.report = report
    model.holdout = {"rows": hold.tolist(), "measured_ms": y[hold].tolist(),
                     "predicted_ms": pred[hold].tolist()}
    return model, report


def _by_sampling(rows, hold, y, pred) -> dict:
    """Held-out MAPE per sampling scheme (uniform / stratified / …) when rows say."""
    tags = {}
    for i in hold:
        tags.setdefault(rows[i].get("sampling", "unknown"), []).append(i)
    if len(tags) < 2:
        return {}
    return {t: {"n": len(ix), **_errors(y[ix], pred[ix])} for t, ix in sorted(tags.items())}


def _errors(y: np.ndarray, pred: np.ndarray) -> dict:
    return {"mae_ms": float(np.mean(np.abs(pred - y))),
            "mape": float(np.mean(np.abs(pred - y) / y) * 100),
            "max_ape": float(np.max(np.abs(pred - y) / y) * 100),
            "mean_measured_ms": float(np.mean(y)), "mean_predicted_ms": float(np.mean(pred))}


def save_latreg(model: LatReg, path) -> None:
    meta = getattr(model, "meta", {}) or {}
    atomic_torch_save({"format": FORMAT, "version": 1, "state_dict": model.state_dict(),
                       "hidden": model.hidden, "extra_keys": list(model.extra_keys),
                       "config": dict(meta.get("config") or {}),
                       "varying": dict(meta.get("varying") or {}), "runtime": meta.get("runtime"),
                       "device": meta.get("device"), "reference_ms": meta.get("reference_ms"),
                       "latency_range_ms": meta.get("latency_range_ms"),
                       "metrics": getattr(model, "report", {})}, path)


def load_latreg(path) -> LatReg:
    """The regressor in `path`; a FormatError for any file `save_latreg` did not write whole
    (another checkpoint, missing fields, weights that do not fit or are not finite)."""
    ckpt = read_checkpoint(path)
    if ckpt.get("format") != FORMAT:
        raise FormatError(f"{path}: not a latency regressor (format {ckpt.get('format')!r})")
    try:
        model = LatReg(int(ckpt["hidden"]), tuple(str(k) for k in ckpt["extra_keys"]))
        model.load_state_dict(ckpt["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        what = f"no {e.args[0]!r}" if isinstance(e, KeyError) else "weights that do not fit"
        raise FormatError(f"{path}: a damaged latency regressor ({what})") from None
    if not all(torch.isfinite(t).all() for t in model.state_dict().values()):
        raise FormatError(f"{path}: a damaged latency regressor (weights are not finite)")
    model.meta = {"config": ckpt.get("config") or {}, "varying": ckpt.get("varying") or {},
                  "runtime": ckpt.get("runtime"),
                  "device": ckpt.get("device"), "reference_ms": ckpt.get("reference_ms"),
                  "latency_range_ms": ckpt.get("latency_range_ms")}
    model.report = ckpt.get("metrics") or {}
    return model.eval().requires_grad_(False)  # an inference artifact: never trained further
