"""The official deep_gcns_torch S3DIS checkpoint layout ↔ our DeepGCN.

Their modules: `head.gconv.nn` and `backbone.i.body.gconv.nn` = Conv2d(2C, C, 1) → act →
BatchNorm2d (act before norm), `fusion_block` and `prediction.j` = Conv2d → act → BN,
`prediction.3` = the classifier conv; the global feature comes first in the prediction input
and kNN runs on raw features including self. We map those keys onto `act_first=True`
convs. Depth, width, input/class counts, fusion size and dense growth come from the weight
shapes; what the keys cannot tell (k, conv edge vs mr, res vs plain) comes from overrides.
"""
from __future__ import annotations

import re

import torch

from ..errors import FormatError

# The official prefix of each of our module prefixes; {i} stands for a block index.
_KEY_MAP = [
    ("head.gconv.nn.0.", "head.lin."),
    ("head.gconv.nn.2.", "head.post.norm."),
    ("backbone.{i}.body.gconv.nn.0.", "backbone.{i}.conv.lin."),
    ("backbone.{i}.body.gconv.nn.2.", "backbone.{i}.conv.post.norm."),
    ("fusion_block.0.", "fusion.lin."),
    ("fusion_block.2.", "fusion.post.norm."),
    ("prediction.{i}.0.", "prediction.{i}.lin."),
    ("prediction.{i}.2.", "prediction.{i}.post.norm."),
]


def _rules(pairs) -> list[tuple[str, str]]:
    """(regex, replacement) for each (from, to) prefix pair, {i} matching a block index."""
    return [("^" + re.escape(src).replace(re.escape("{i}"), r"(\d+)"),
             dst.replace("{i}", r"\1")) for src, dst in pairs]


_RULES = _rules(_KEY_MAP)  # official → ours
_REVERSE = _rules([(ours, theirs) for theirs, ours in _KEY_MAP])  # ours → official

HEAD_KEY = "head.gconv.nn.0.weight"


def _strip(sd: dict) -> dict:
    if sd and all(k.startswith("module.") for k in sd):
        return {k[len("module."):]: v for k, v in sd.items()}
    return dict(sd)


def is_official(ckpt: dict) -> bool:
    sd = ckpt.get("state_dict")
    return isinstance(sd, dict) and HEAD_KEY in _strip(sd)


def _rename(key: str, rules) -> str:
    for pattern, repl in rules:
        new, n = re.subn(pattern, repl, key)
        if n:
            return new
    raise FormatError(f"unexpected key in official checkpoint: {key}")


def convert_official(ckpt: dict, **overrides) -> tuple[dict, dict]:
    """(model config, our state dict) for an official S3DIS DeepGCN checkpoint."""
    sd = _strip(ckpt["state_dict"])
    try:
        head = sd[HEAD_KEY]
        channels, in2 = head.shape[:2]
        blocks = sorted({int(m.group(1)) for k in sd for m in [re.match(r"backbone\.(\d+)\.", k)] if m})
        fusion = sd["fusion_block.0.weight"]
        pred = [sd[f"prediction.{j}.0.weight"] for j in (0, 1, 3)]
    except KeyError as e:
        raise FormatError(f"official checkpoint lacks {e.args[0]}; only the S3DIS "
                          "segmentation layout is supported") from e
    first_in = [sd[f"backbone.{i}.body.gconv.nn.0.weight"].shape[1] // 2 for i in blocks[:2]]
    dense = len(first_in) == 2 and first_in[1] > first_in[0]
    cfg = dict(
        name="deepgcn", task="segmentation", in_channels=in2 // 2, n_classes=pred[2].shape[0],
        n_blocks=len(blocks) + 1, channels=channels, k=16, conv="edge",
        block="dense" if dense else "res",
        growth=sd["backbone.0.body.gconv.nn.0.weight"].shape[0] if dense else None,
        norm="batch" if "head.gconv.nn.2.running_mean" in sd else "none", act="relu",
        bias="head.gconv.nn.0.bias" in sd, act_first=True, use_dilation=True, stochastic=True,
        epsilon=0.2, graph_channels=3, fusion_channels=fusion.shape[0],
        prediction=[pred[0].shape[0], pred[1].shape[0]], dropout=0.3,
    )
    cfg.update(overrides)
    if cfg["conv"] not in ("edge", "mr"):
        raise FormatError("official checkpoints are converted for conv edge or mr only")
    ours = {}
    for key, value in sd.items():
        value = value.reshape(value.shape[:2]) if value.dim() == 4 else value
        ours[_rename(key, _RULES)] = value
    return cfg, ours


def official_state_dict(model: torch.nn.Module) -> dict:
    """Our DeepGCN's weights in the official layout (1×1 conv weights as (out, in, 1, 1))."""
    out = {}
    for key, value in model.state_dict().items():
        new = _rename(key, _REVERSE)
        if value.dim() == 2 and new.endswith("0.weight"):
            value = value.reshape(*value.shape, 1, 1)
        out[new] = value
    return out
