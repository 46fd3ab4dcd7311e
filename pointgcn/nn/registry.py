"""The registries of `pointgcn.nn`: graph convs, blocks and aggregators join them where they
are defined (`@CONVS.register("edge", options=…)`); `pointgcn.nn` imports every module, so a
registry is complete whenever anything of the package can be used.

A conv registers the config options it takes beyond the shared ones (norm, act, bias,
act_first); their defaults are its constructor's, and `conv_option_defaults` collects them
for the model configs, so an option and its default are written once, on the conv.
"""
from __future__ import annotations

import inspect

from ..registry import Registry
from .base import GraphConv

CONVS = Registry("conv")
BLOCKS = Registry("block")
AGGREGATORS = Registry("aggr")


def conv_option_defaults() -> dict:
    """{option: default} for every option some registered conv takes (from its signature)."""
    out = {}
    for name in CONVS.names():
        params = inspect.signature(CONVS.get(name)).parameters
        for key in CONVS.info(name).get("options", ()):
            default = params[key].default
            if out.setdefault(key, default) != default:
                raise TypeError(f"conv option {key!r} has two defaults: {out[key]!r}, "
                                f"{default!r} ({name})")
    return out


def make_conv(kind: str, in_channels: int, out_channels: int, norm: str = "batch",
              act: str = "relu", bias: bool = True, act_first: bool = False,
              **options) -> GraphConv:
    """Build conv `kind`; `options` not used by that conv are ignored (one config, many convs)."""
    kind = CONVS.canonical(kind.lower())
    own = CONVS.info(kind).get("options", ())
    return CONVS.get(kind)(in_channels, out_channels, norm=norm, act=act, bias=bias,
                           act_first=act_first, **{k: v for k, v in options.items() if k in own})
