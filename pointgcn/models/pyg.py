"""Models on a PyG `Data` / `Batch` of ragged clouds: the one adapter to and from the dense path.

In: `pos` (N, 3), optional `x` (N, F), optional `batch` (N,) — the features are cat(pos, x), xyz
first as in training (the head's graph is built on xyz). They are made dense with
`torch_geometric.utils.to_dense_batch`, (B, 3 + F, N_max) plus the real-point mask, and the
model runs inside `graph.point_mask(mask)`: padding is never a neighbour (`knn`) and never
pooled (`FusionHead`). Out: segmentation logits per node (num_nodes, classes) in node order,
classification logits per cloud (num_graphs, classes).

In eval mode the result is each cloud's alone. In training, batch-norm statistics cover the real
points only (`nn.norm_act.apply_norm`) and reversible stacks rebuild their graphs with the mask
in backward. Instance norm takes statistics over every point of a cloud, padding included, so
a padded batch refuses it (clouds of equal size have no padding and run with any norm).
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError, InputError
from ..graph import dense_batch, point_mask


def is_pyg_data(obj) -> bool:
    """Not a dense tensor: a PyG `Data` / `Batch` (what it holds is checked by `pyg_features`)."""
    return not isinstance(obj, torch.Tensor)


def pyg_features(data) -> torch.Tensor:
    """cat(pos, x) per node: (N, 3 + F)."""
    pos, x = getattr(data, "pos", None), getattr(data, "x", None)
    if not isinstance(pos, torch.Tensor):
        raise InputError(f"a model takes features (B, C, N) or a PyG Data/Batch with pos; got "
                         f"{type(data).__name__}" + ("" if pos is None else " whose pos is no "
                                                     "tensor"))
    if pos.dim() != 2:
        raise InputError(f"data.pos must be (num_nodes, 3), got {tuple(pos.shape)}")
    if x is None:
        return pos
    if x.dim() == 1:
        x = x.unsqueeze(1)
    if x.shape[0] != pos.shape[0]:
        raise InputError(f"data.x has {x.shape[0]} rows but data.pos {pos.shape[0]}")
    return torch.cat([pos, x.to(pos.dtype)], dim=1)


def forward_pyg(model: nn.Module, data) -> torch.Tensor:
    """`model` (any dense `(B, C, N)` model of ours) on a PyG `Data` / `Batch` (see module doc)."""
    feats = pyg_features(data)
    dense, mask = dense_batch(feats, getattr(data, "batch", None))
    if mask is not None and bool((~mask).any()):
        if any(isinstance(m, nn.InstanceNorm1d) for m in model.modules()):
            raise ConfigError("instance norm mixes every point of a cloud, padding included: "
                              "run clouds of different sizes one at a time")
    else:
        mask = None  # nothing padded: the plain dense path
    with point_mask(mask):
        out = model(dense.transpose(1, 2))
    if out.dim() == 2:  # classification: one row per cloud
        return out
    out = out.transpose(1, 2)  # (B, N_max, classes)
    return out.reshape(-1, out.shape[-1]) if mask is None else out[mask]
