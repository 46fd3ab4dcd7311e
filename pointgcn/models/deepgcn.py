"""DeepGCN models (Li et al., ICCV 2019 / TPAMI 2021) for segmentation and classification.

head      graph conv on the input features, graph from the first `graph_channels` (xyz)
backbone  n_blocks − 1 dynamic blocks, block i with dilation 1 + i (when use_dilation)
fusion    1×1 conv of [head, all block outputs] to `fusion_channels`
seg       prediction MLP on [max-pooled fusion broadcast to every point, all block outputs]
cls       prediction MLP on [max-pool, mean-pool] of the fusion

A PyG `Data` / `Batch` of ragged clouds is accepted as input (`models.pyg`).

Stacked backbones (rev, wt-rev, deq) fuse only their last output (keeping every block's would
undo their memory saving).
"""
from __future__ import annotations

import torch
from torch import nn

from ..config import check_int, check_number
from ..errors import ConfigError
from ..graph import DilatedKnn
from ..nn import (BLOCKS, CONVS, RevStack, conv_option_defaults, graph_for, make_backbone,
                  make_conv, resolve_deq)
from .heads import FusionHead, check_head
from .pyg import forward_pyg, is_pyg_data
from .registry import MAX_DEPTH, MAX_REVERSIBLE_DEPTH, MAX_WIDTH, MODELS

# The conv options (heads, aggr, t, …, eps, train_eps) and their defaults come from the convs
# that take them (`pointgcn.nn.conv_option_defaults`).
CONV_OPTIONS = conv_option_defaults()
DEFAULTS = dict(
    name="deepgcn", task="segmentation", in_channels=9, n_classes=13, n_blocks=28, channels=64,
    k=16, conv="edge", block="res", norm="batch", act="relu", bias=True, act_first=False,
    use_dilation=True, stochastic=True, epsilon=0.2, knn_backend="dense", res_scale=1.0,
    growth=None, rev_groups=2, block_dropout=0.0, graph_channels=3, fusion_channels=1024,
    fusion_input=None, pooling=None, prediction=[512, 256], dropout=0.5, deq=None,
    **CONV_OPTIONS,
)
REVERSIBLE = ("rev", "wt-rev")  # training memory flat in depth: up to MAX_REVERSIBLE_DEPTH
# epsilon is a probability; t (softmax temperature) and eps (GIN) any finite number; p (power
# mean) > 0, since 1/p is taken.
FLOAT_RANGES = dict(epsilon="[0, 1]", block_dropout="[0, 1)",
                    res_scale="[0, inf)", t="(-inf, inf)", p="(0, inf)", eps="(-inf, inf)")


def resolve(cfg: dict) -> dict:
    """Fill defaults, reject unknown keys and impossible values."""
    unknown = set(cfg) - set(DEFAULTS)
    if unknown:
        raise ConfigError(f"unknown model keys: {', '.join(sorted(unknown))}")
    c = {**DEFAULTS, **cfg}
    for key in ("in_channels", "n_classes", "channels", "growth", "k"):
        check_int(c, key, "model", maximum=MAX_WIDTH)
    check_int(c, "mlp_layers", "model", maximum=MAX_DEPTH)
    for key in ("rev_groups", "heads"):
        check_int(c, key, "model")
    check_int(c, "graph_channels", "model", minimum=0)
    for key, interval in FLOAT_RANGES.items():
        check_number(c, key, "model", interval, allow_none=False)
    check_head(c)
    for key, registry in (("conv", CONVS), ("block", BLOCKS)):
        c[key] = registry.canonical(str(c[key]).lower())
    stack = BLOCKS.info(c["block"]).get("stack", False)
    check_int(c, "n_blocks", "model", maximum=MAX_REVERSIBLE_DEPTH if c["block"] in REVERSIBLE
              else MAX_DEPTH)
    if c["fusion_input"] is None:
        c["fusion_input"] = "last" if stack else "all"
    if c["fusion_input"] not in ("all", "last"):
        raise ConfigError("model.fusion_input must be 'all' or 'last'")
    if stack and c["fusion_input"] == "all":
        raise ConfigError(f"{c['block']} backbones fuse only the last output (fusion_input: "
                          "last); keeping every block output would undo their memory saving")
    if c["block"] == "deq":
        c["deq"] = resolve_deq(c["deq"])
    elif c.pop("deq") is not None:
        raise ConfigError(f"model.deq configures block: deq, not block: {c['block']}")
    if c["graph_channels"] and c["graph_channels"] > c["in_channels"]:
        raise ConfigError("model.graph_channels exceeds model.in_channels")
    return c


@MODELS.register("deepgcn")
class DeepGCN(FusionHead):
    def __init__(self, cfg: dict):
        nn.Module.__init__(self)
        c = self.cfg = resolve(cfg)
        post = dict(norm=c["norm"], act=c["act"], bias=c["bias"], act_first=c["act_first"])
        opts = {key: c[key] for key in CONV_OPTIONS}
        width = c["channels"]
        self.head_graph = DilatedKnn(c["k"], 1, c["stochastic"], c["epsilon"], c["knn_backend"])
        self.head = make_conv(c["conv"], c["in_channels"], width, **post, **opts)
        self.backbone, widths = make_backbone(
            c["block"], c["n_blocks"] - 1, width, c["conv"], c["k"], c["use_dilation"],
            stochastic=c["stochastic"], epsilon=c["epsilon"], knn_backend=c["knn_backend"],
            res_scale=c["res_scale"], growth=c["growth"], dropout=c["block_dropout"],
            rev_groups=c["rev_groups"], deq=c.get("deq"), **post, **opts)
        widths = [width] + widths
        fused = sum(widths) if c["fusion_input"] == "all" else widths[-1]
        self._build_head(c, fused, post)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Head and backbone outputs that feed the fusion."""
        c = self.cfg
        positions = x[:, :c["graph_channels"] or x.shape[1]]  # the head's graph: xyz only
        feats = [self.head(x, graph_for(self.head, self.head_graph, positions))]
        if isinstance(self.backbone, nn.ModuleList):
            for block in self.backbone:
                feats.append(block(feats[-1]))
        else:  # a stack: one module, its last output
            feats.append(self.backbone(feats[-1]))
        return feats if c["fusion_input"] == "all" else feats[-1:]

    def layers(self) -> list[tuple[str, nn.Module]]:
        """The graph layers in order, each called once per forward (pointgcn.engine.analyze);
        a weight-tied or equilibrium backbone, whose modules run many times, is one layer."""
        if isinstance(self.backbone, (nn.ModuleList, RevStack)):
            blocks = self.backbone.blocks if isinstance(self.backbone, RevStack) else self.backbone
            return [("head", self.head)] + [(f"block{i + 1}", b) for i, b in enumerate(blocks)]
        return [("head", self.head), (self.cfg["block"], self.backbone)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of `x` (B, C, N), or of a PyG `Data` / `Batch` per node / cloud (`models.pyg`)."""
        if is_pyg_data(x):
            return forward_pyg(self, x)
        if x.dim() != 3 or x.shape[1] != self.cfg["in_channels"]:
            raise ConfigError(f"model expects input (B, {self.cfg['in_channels']}, N), "
                              f"got {tuple(x.shape)}")
        return self.predict(torch.cat(self.features(x), dim=1))

