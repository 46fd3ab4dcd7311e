"""The DeepGCN fusion + prediction head as a module any backbone can put on its features.

`DeepGCN` is a `FusionHead` with a graph backbone in front (so its parameters keep the official
`fusion` / `prediction` names); other backbones (the NAS cells) hold one. The head:

seg  prediction MLP on [max-pooled fusion broadcast to every point, features]
cls  prediction MLP on [max-pool, mean-pool] of the fusion (dropout after every layer)

Inside `graph.point_mask(mask)` (a padded batch of ragged clouds, `models.pyg`) the pools
cover each cloud's real points only.
"""
from __future__ import annotations

import torch
from torch import nn

from ..config import check_int, check_number
from ..errors import ConfigError
from ..graph import active_mask
from ..nn import Conv1x1
from ..tasks import TASKS
from .registry import MAX_WIDTH

POOLS = ("max", "mean")


def pool(f: torch.Tensor, kind: str, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Max or mean over points `(B, F, N) → (B, F, 1)`, over the real points of `mask` (B, N)."""
    if mask is None:
        return f.amax(-1, keepdim=True) if kind == "max" else f.mean(-1, keepdim=True)
    m = mask.unsqueeze(1)
    if kind == "max":
        return f.masked_fill(~m, -float("inf")).amax(-1, keepdim=True)
    return (f * m).sum(-1, keepdim=True) / m.sum(-1, keepdim=True)


def check_head(c: dict) -> None:
    """The head's keys of a model config (task, fusion_channels, prediction, dropout, pooling),
    checked the same way for every backbone; a missing pooling becomes the task's default
    ([max, mean] for classification, [max] otherwise)."""
    if c["task"] not in TASKS:
        raise ConfigError(f"model.task must be one of {TASKS}, got {c['task']!r}")
    check_int(c, "fusion_channels", "model", maximum=MAX_WIDTH)
    widths = c["prediction"]
    if not (isinstance(widths, (list, tuple)) and all(
            isinstance(w, int) and not isinstance(w, bool) and 1 <= w <= MAX_WIDTH
            for w in widths)):
        raise ConfigError(f"model.prediction must be a list of widths in 1…{MAX_WIDTH}, "
                          f"got {widths!r}")
    check_number(c, "dropout", "model", "[0, 1)", allow_none=False)
    if c["pooling"] is None:
        c["pooling"] = ["max", "mean"] if c["task"] == "classification" else ["max"]
    if not (isinstance(c["pooling"], (list, tuple)) and set(c["pooling"]) <= set(POOLS)):
        raise ConfigError(f"model.pooling entries must be max/mean, got {c['pooling']!r}")


class FusionHead(nn.Module):
    """The head of a model config `c` checked by `check_head`, on `feature_channels` of
    concatenated backbone features; `post` holds the norm/act/bias/act_first of its layers."""

    def __init__(self, c: dict, feature_channels: int, post: dict):
        super().__init__()
        self._build_head(c, feature_channels, post)

    def _build_head(self, c: dict, feature_channels: int, post: dict):
        self.classify = c["task"] == "classification"
        self.pooling = list(c["pooling"])
        fusion = c["fusion_channels"]
        self.fusion = Conv1x1(feature_channels, fusion, **post)
        if self.classify:  # the pooled fusion only; dropout after every layer
            widths = [fusion * len(self.pooling), *c["prediction"]]
        else:  # the global feature first, then every point's features
            widths = [fusion + feature_channels, *c["prediction"]]
        self.prediction = _mlp(widths, c["n_classes"], post, c["dropout"],
                               dropout_every=self.classify)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.predict(feats)

    def predict(self, feats: torch.Tensor) -> torch.Tensor:
        """Concatenated backbone features `(B, F, N)` → logits `(B, n_classes[, N])`."""
        fusion = self.fusion(feats, None)
        mask = active_mask()
        if self.classify:
            pooled = torch.cat([pool(fusion, p, mask) for p in self.pooling], dim=1)
            return self._run_mlp(pooled).squeeze(-1)
        glob = pool(fusion, "max", mask).expand(-1, -1, feats.shape[2])
        return self._run_mlp(torch.cat([glob, feats], dim=1))

    def _run_mlp(self, h: torch.Tensor) -> torch.Tensor:
        for layer in self.prediction:
            h = layer(h, None) if isinstance(layer, Conv1x1) else layer(h)
        return h


def _mlp(widths: list[int], n_out: int, post: dict, dropout: float,
         dropout_every: bool) -> nn.Sequential:
    """1×1 layers widths[0]→…→widths[-1], dropout (after each or only the last), → n_out.

    With `dropout_every=False` the layer indices match the official DeepGCN segmentation head
    (0, 1 = convs, 2 = dropout, 3 = classifier), which keeps the checkpoint converter trivial.
    """
    layers: list[nn.Module] = []
    for cin, cout in zip(widths[:-1], widths[1:]):
        layers.append(Conv1x1(cin, cout, **post))
        if dropout_every:
            layers.append(nn.Dropout(dropout))
    if not dropout_every:
        layers.append(nn.Dropout(dropout))
    layers.append(Conv1x1(widths[-1], n_out, norm="none", act="none", bias=True))
    return nn.Sequential(*layers)
