"""Networks of cells: the stand-alone genotype network (`build_model({"name": "nas", …})`) and
the SGAS / LC-NAS supernet.

stem      1×1 conv (+ BatchNorm, no activation) to stem_multiplier·C channels
cells     L cells, cell i with kNN dilation i + 1; cell inputs are the two previous outputs
head      the DeepGCN fusion + prediction head (`pointgcn.models.heads.FusionHead`) on
          [stem, every cell output]

Model config (`model:` section); cells / channels / k default to the genotype's:

    name: nas
    genotype: {nodes: …, cells: 2, channels: 32, k: 9} | path/to/genotype.yaml
    task: classification | segmentation | part_segmentation
    in_channels: 3   n_classes: 40   cells: null  channels: null  k: null
    stem_multiplier: 3   norm: batch   act: relu   head_act: null (= act)
    stochastic: false   epsilon: 0.2   knn_backend: dense   heads: 1 (GAT)
    fusion_channels: 1024   prediction: [512, 256]   dropout: 0.5   pooling: null
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import check_int, check_number
from ..errors import ConfigError
from ..models.heads import FusionHead, check_head
from ..models.pyg import forward_pyg, is_pyg_data
from ..models.registry import MAX_DEPTH, MAX_WIDTH, MODELS
from ..nn import Conv1x1
from .cell import UNDECIDED, GenotypeCell, SearchCell
from .genotype import N_EDGES, N_OPS, load_genotype

DEFAULTS = dict(
    name="nas", task="classification", in_channels=3, n_classes=40, genotype=None, cells=None,
    channels=None, k=None, stem_multiplier=3, norm="batch", act="relu", head_act=None,
    stochastic=False, epsilon=0.2, knn_backend="dense", heads=1, fusion_channels=1024,
    prediction=[512, 256], dropout=0.5, pooling=None,
)


def resolve(cfg: dict, need_genotype: bool = True) -> dict:
    unknown = set(cfg) - set(DEFAULTS)
    if unknown:
        raise ConfigError(f"unknown model keys: {', '.join(sorted(unknown))}")
    c = {**DEFAULTS, **cfg}
    if need_genotype:
        if c["genotype"] is None:
            raise ConfigError("model.genotype is required for name 'nas' "
                              "(a mapping or a genotype file)")
        g = load_genotype(c["genotype"])
        c["genotype"] = g.to_dict()  # inline: the resolved config no longer needs the file
        for key in ("cells", "channels", "k"):
            if c[key] is None:
                c[key] = getattr(g, key)
    for key in ("cells", "channels", "k", "in_channels", "n_classes", "stem_multiplier"):
        if c[key] is None:
            raise ConfigError(f"model.{key} must be a positive integer, got None")
        check_int(c, key, "model", maximum=MAX_DEPTH if key == "cells" else MAX_WIDTH)
    if c["stem_multiplier"] * c["channels"] > MAX_WIDTH:
        raise ConfigError(f"model.stem_multiplier × channels must be at most {MAX_WIDTH}, got "
                          f"{c['stem_multiplier']} × {c['channels']}")
    check_number(c, "epsilon", "model", "[0, 1]", allow_none=False)
    check_head(c)
    return c


class _CellNetwork(nn.Module):
    """stem → cells → fusion head; subclasses say how a cell is built and run."""

    def __init__(self, c: dict, make_cell):
        super().__init__()
        self.cfg = c
        width = c["channels"]
        stem_width = c["stem_multiplier"] * width
        self.stem = Conv1x1(c["in_channels"], stem_width, norm=c["norm"], act="none", bias=False)
        cells, c_pp, c_p, widths = [], stem_width, stem_width, [stem_width]
        for i in range(c["cells"]):
            cell = make_cell(i, c_pp, c_p, dict(
                k=c["k"], dilation=i + 1, stochastic=c["stochastic"], epsilon=c["epsilon"],
                knn_backend=c["knn_backend"], norm=c["norm"], act=c["act"], heads=c["heads"]))
            cells.append(cell)
            c_pp, c_p = c_p, cell.out_channels
            widths.append(cell.out_channels)
        self.cells = nn.ModuleList(cells)
        post = dict(norm=c["norm"], act=c["head_act"] or c["act"], bias=True, act_first=False)
        self.head = FusionHead(c, sum(widths), post)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 3 or x.shape[1] != self.cfg["in_channels"]:
            raise ConfigError(f"model expects input (B, {self.cfg['in_channels']}, N), "
                              f"got {tuple(x.shape)}")

    def layers(self) -> list[tuple[str, nn.Module]]:
        """The stem and cells in order, each called once per forward (engine.analyze)."""
        return [("stem", self.stem)] + [(f"cell{i + 1}", c) for i, c in enumerate(self.cells)]

    def _run(self, x: torch.Tensor, run_cell) -> torch.Tensor:
        self._check_input(x)
        s0 = s1 = self.stem(x, None)
        feats = [s1]
        for cell in self.cells:
            s0, s1 = s1, run_cell(cell, s0, s1)
            feats.append(s1)
        return self.head(torch.cat(feats, dim=1))


@MODELS.register("nas", file_keys=("genotype",))
class NASNetwork(_CellNetwork):
    """The stand-alone network of one genotype (every cell the same)."""

    def __init__(self, cfg: dict):
        c = resolve(cfg)
        self.genotype = load_genotype(c["genotype"])
        super().__init__(c, lambda i, c_pp, c_p, kw: GenotypeCell(
            self.genotype, c_pp, c_p, c["channels"], **kw))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if is_pyg_data(x):  # a PyG Data / Batch of ragged clouds (pointgcn.models.pyg)
            return forward_pyg(self, x)
        return self._run(x, lambda cell, s0, s1: cell(s0, s1))


class SearchNetwork(_CellNetwork):
    """The supernet: one α vector per edge shared by all cells (SGAS normal cell).

    `selected[e]` is −1 while edge e is undecided, 0 once pruned, else its fixed op index.
    """

    def __init__(self, cfg: dict):
        c = resolve(cfg, need_genotype=False)
        if c["genotype"] is not None:  # it would be ignored: say so rather than search anyway
            raise ConfigError("model.genotype has no place in a search: the supernet searches "
                              "the cell (train a genotype with model name: nas)")
        super().__init__(c, lambda i, c_pp, c_p, kw: SearchCell(c_pp, c_p, c["channels"], **kw))
        self.alphas = nn.ParameterList(nn.Parameter(1e-3 * torch.randn(N_OPS))
                                       for _ in range(N_EDGES))
        self.selected: list[int] = [UNDECIDED] * N_EDGES

    def alpha_matrix(self) -> torch.Tensor:
        return torch.stack(list(self.alphas))

    def mixing_weights(self) -> torch.Tensor:
        return F.softmax(self.alpha_matrix(), dim=-1)

    def arch_parameters(self) -> list[nn.Parameter]:
        return list(self.alphas)

    def weight_parameters(self) -> list[nn.Parameter]:
        arch = {id(p) for p in self.alphas}
        return [p for p in self.parameters() if id(p) not in arch]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.mixing_weights()
        return self._run(x, lambda cell, s0, s1: cell(s0, s1, weights, self.selected))

    def genotype_config(self) -> dict:
        return {"cells": self.cfg["cells"], "channels": self.cfg["channels"], "k": self.cfg["k"]}

