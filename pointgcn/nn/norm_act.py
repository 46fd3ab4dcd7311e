"""Normalisation and activation layers chosen by name, usable on point and edge tensors.

Convs work channels-last internally: point features `(B, N, C)`, edge features `(B, N, k, C)`.
`apply_norm` feeds any such tensor to a standard torch norm module so that batch statistics
cover every point (or edge) of the batch, instance statistics every point of one sample, and
layer norm the channels of one point. Inside `graph.point_mask(mask)` (a padded batch of
ragged clouds) batch statistics in training cover the real points (and their edges) only.
"""
from __future__ import annotations

import torch
from torch import nn

from ..graph import active_mask

from ..errors import ConfigError

NORMS = ("batch", "instance", "layer", "none")
ACTS = ("relu", "leakyrelu", "prelu", "gelu", "none")


def make_norm(kind: str | None, channels: int) -> nn.Module:
    kind = (kind or "none").lower()
    if kind == "batch":
        return nn.BatchNorm1d(channels)
    if kind == "instance":
        return nn.InstanceNorm1d(channels, affine=True)
    if kind == "layer":
        return nn.LayerNorm(channels)
    if kind == "none":
        return nn.Identity()
    raise ConfigError(f"norm must be one of {NORMS}, got {kind!r}")


def make_act(kind: str | None, negative_slope: float = 0.2) -> nn.Module:
    kind = (kind or "none").lower()
    if kind == "relu":
        return nn.ReLU()
    if kind == "leakyrelu":
        return nn.LeakyReLU(negative_slope)
    if kind == "prelu":
        return nn.PReLU(init=negative_slope)
    if kind == "gelu":
        return nn.GELU()
    if kind == "none":
        return nn.Identity()
    raise ConfigError(f"act must be one of {ACTS}, got {kind!r}")


def apply_norm(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Normalise a channels-last tensor `(B, *, C)`."""
    if isinstance(norm, nn.Identity):
        return x
    if isinstance(norm, nn.LayerNorm):
        return norm(x)
    shape = x.shape
    b, c = shape[0], shape[-1]
    if isinstance(norm, nn.BatchNorm1d):
        mask = active_mask() if norm.training else None
        if mask is not None and shape[:2] == mask.shape:  # per point (or edge): real rows only
            real = mask.view(*mask.shape, *[1] * (len(shape) - 3)).expand(shape[:-1])
            out = x.new_zeros(shape)
            out[real] = norm(x[real])
            return out
        return norm(x.reshape(-1, c)).view(shape)
    if isinstance(norm, nn.InstanceNorm1d):
        return norm(x.reshape(b, -1, c).transpose(1, 2)).transpose(1, 2).reshape(shape)
    raise TypeError(f"unsupported norm module {type(norm).__name__}")


def channel_scale(norm: nn.Module) -> torch.Tensor | None:
    """Per-channel slope of an eval-mode norm that is affine per channel.

    BatchNorm in eval is y = s·x + t per channel; identity returns None (slope 1 everywhere).
    Instance/layer norms mix values across points or channels, so they have no such slope:
    ValueError.
    """
    if isinstance(norm, nn.Identity):
        return None
    if isinstance(norm, nn.BatchNorm1d) and not norm.training and norm.track_running_stats:
        s = torch.rsqrt(norm.running_var + norm.eps)
        return s * norm.weight if norm.affine else s
    raise ValueError("norm is not a per-channel affine map")


def is_monotone(act: nn.Module) -> bool:
    """True when the activation is non-decreasing (so max commutes with it)."""
    if isinstance(act, (nn.Identity, nn.ReLU)):
        return True
    if isinstance(act, nn.LeakyReLU):
        return act.negative_slope >= 0
    if isinstance(act, nn.PReLU):
        return bool((act.weight >= 0).all())
    return False


class PostProcess(nn.Module):
    """Norm and activation after a linear map, in either order.

    `act_first=True` reproduces the official DeepGCN code (Conv → act → norm).
    """

    def __init__(self, channels: int, norm: str | None, act: str | None, act_first: bool = False):
        super().__init__()
        self.norm = make_norm(norm, channels)
        self.act = make_act(act)
        self.act_first = act_first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.act_first:
            return apply_norm(self.norm, self.act(x))
        return self.act(apply_norm(self.norm, x))

    def max_commutes(self) -> bool:
        """Whether max over neighbours can be taken before this map (eval, monotone per channel)."""
        if self.training or not is_monotone(self.act):
            return False
        try:
            channel_scale(self.norm)
        except ValueError:
            return False
        return True

