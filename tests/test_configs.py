"""Every shipped config is valid: known keys, a model that builds, sane data/train sections."""
from pathlib import Path

import pytest

from pointgcn.config import load_config
from pointgcn.data.build import resolve_data
from pointgcn.engine.optim import resolve_train
from pointgcn.models import build_model

CONFIGS = sorted((Path(__file__).parent.parent / "configs").rglob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_is_valid(path):
    cfg = load_config(path)
    if "data" in cfg:
        resolve_data(cfg["data"])
    if "train" in cfg:
        resolve_train(cfg["train"])
    model = cfg.get("model")
    if model and "search" not in cfg:  # search configs describe a supernet, not a model
        model.setdefault("n_classes", 6)
        model.setdefault("in_channels", 3)
        if isinstance(model.get("genotype"), str):  # a template pointing at a search's output
            model["genotype"] = load_config(path.parent / "nas_synth_shapes_train.yaml"
                                            )["model"]["genotype"]
        build_model(cfg)


def test_paper_setups():
    s3dis = load_config(CONFIGS[0].parent / "s3dis_resgcn28.yaml")["model"]
    assert (s3dis["k"], s3dis["channels"], s3dis["n_blocks"], s3dis["conv"], s3dis["block"],
            s3dis["epsilon"], s3dis["in_channels"], s3dis["n_classes"]) == \
        (16, 64, 28, "edge", "res", 0.2, 9, 13)
    mn = load_config(CONFIGS[0].parent / "modelnet40_resgcn28.yaml")
    assert (mn["model"]["k"], mn["model"]["channels"], mn["data"]["n_points"],
            mn["model"]["n_classes"]) == (9, 64, 1024, 40)
    pn = load_config(CONFIGS[0].parent / "partnet_resgcn28.yaml")["model"]
    assert (pn["k"], pn["in_channels"], pn["n_blocks"]) == (9, 3, 28)


def test_exponent_floats_in_files_and_overrides(tmp_path):
    """YAML 1.1 (PyYAML) reads `1e-3` as a string; configs read it as the number it is."""
    from pointgcn.config import load_config

    (tmp_path / "c.yaml").write_text("train:\n  lr: 1e-3\n  weight_decay: 5E-4\n  name: 1e\n")
    cfg = load_config(tmp_path / "c.yaml", ["train.momentum=9e-1", "model.tag=e5"])
    assert cfg["train"] == {"lr": 0.001, "weight_decay": 0.0005, "name": "1e", "momentum": 0.9}
    assert cfg["model"]["tag"] == "e5"


def test_base_cycles_are_one_line_errors(tmp_path):
    from pointgcn.errors import ConfigError

    (tmp_path / "self.yaml").write_text("base: self.yaml\ntrain: {lr: 0.1}\n")
    with pytest.raises(ConfigError, match=r"config base cycle: .*self.yaml → .*self.yaml$"):
        load_config(tmp_path / "self.yaml")
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: ./a.yaml\n")
    with pytest.raises(ConfigError, match=r"a.yaml → .*b.yaml → .*a.yaml$"):
        load_config(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("base: [a.yaml]\n")
    with pytest.raises(ConfigError, match="base must name a config file"):
        load_config(tmp_path / "c.yaml")
    # a diamond is no cycle: d → e, d's base chain only
    (tmp_path / "e.yaml").write_text("train: {lr: 0.1, epochs: 2}\n")
    (tmp_path / "d.yaml").write_text("base: e.yaml\ntrain: {epochs: 3}\n")
    assert load_config(tmp_path / "d.yaml")["train"] == {"lr": 0.1, "epochs": 3}


@pytest.mark.parametrize("key,value,msg", [
    ("lr", float("nan"), "train.lr must be a finite number > 0, got nan"),
    ("lr", 0, "train.lr must be a finite number > 0, got 0"),
    ("lr", float("inf"), "train.lr must be a finite number > 0, got inf"),
    ("weight_decay", -1e-4, "train.weight_decay must be a finite number ≥ 0"),
    ("momentum", 1.0, r"train.momentum must be a number in \[0, 1\)"),
    ("label_smoothing", 1.5, r"train.label_smoothing must be a number in \[0, 1\]"),
    ("gamma", 0, "train.gamma must be a finite number > 0"),
    ("min_lr", float("nan"), "train.min_lr must be a finite number ≥ 0, got nan"),
    ("grad_clip", "1", "train.grad_clip must be a finite number ≥ 0, got '1'"),
])
def test_train_floats_finite_and_in_range(key, value, msg):
    from pointgcn.errors import ConfigError

    with pytest.raises(ConfigError, match=msg):
        resolve_train({key: value})


def _small(model: dict) -> dict:
    return {} if model.get("name") == "nas" else {"n_blocks": 2, "channels": 8, "k": 4}


@pytest.mark.parametrize("model,msg", [
    ({"dropout": 1.0}, r"model.dropout must be a number in \[0, 1\)"),
    ({"dropout": float("nan")}, r"model.dropout must be a number in \[0, 1\), got nan"),
    ({"epsilon": 1.5}, r"model.epsilon must be a number in \[0, 1\]"),
    ({"block_dropout": -0.1}, "model.block_dropout"),
    ({"res_scale": float("inf")}, "model.res_scale must be a finite number ≥ 0"),
    ({"conv": "gen", "aggr": "power", "p": 0}, "model.p must be a finite number > 0"),
    ({"t": float("nan")}, "model.t must be a finite number, got nan"),
    ({"name": "nas", "genotype": {"nodes": [[["edge_conv", 0]]] * 3}, "dropout": 1},
     r"model.dropout must be a number in \[0, 1\)"),
    ({"name": "nas", "genotype": {"nodes": [[["edge_conv", 0]]] * 3}, "epsilon": float("nan")},
     "model.epsilon"),
])
def test_model_floats_finite_and_in_range(model, msg):
    from pointgcn.errors import ConfigError

    with pytest.raises(ConfigError, match=msg):
        build_model({**_small(model), **model})


@pytest.mark.parametrize("model,msg", [
    ({"channels": 300000}, "model.channels must be at most 4096, got 300000"),
    ({"fusion_channels": 10**6}, "model.fusion_channels must be at most 4096"),
    ({"prediction": [512, 10**6]}, "model.prediction must be a list of widths in 1…4096"),
    ({"prediction": 512}, "model.prediction must be a list of widths"),
    ({"in_channels": 5000}, "model.in_channels must be at most 4096"),
    ({"n_classes": 10**7}, "model.n_classes must be at most 4096"),
    ({"block": "dense", "growth": 10**5}, "model.growth must be at most 4096"),
    ({"k": 10**6}, "model.k must be at most 4096"),
    ({"n_blocks": 201}, "model.n_blocks must be at most 200"),
    ({"conv": "gen", "mlp_layers": 10**4}, "model.mlp_layers must be at most 200"),
    # each width in bounds, together too many: counted on the meta device, nothing allocated
    ({"n_blocks": 200, "channels": 4096, "block": "dense", "growth": 4096},
     r"the model would hold \d+\.\d billion numbers .*at most 1 billion"),
    ({"name": "nas", "genotype": {"nodes": [[["edge_conv", 0]]] * 3}, "channels": 10**6},
     "model.channels must be at most 4096"),
    ({"name": "nas", "genotype": {"nodes": [[["edge_conv", 0]]] * 3}, "cells": 10**4},
     "model.cells must be at most 200"),
    ({"name": "nas", "genotype": {"nodes": [[["edge_conv", 0]]] * 3}, "channels": 2048},
     "model.stem_multiplier × channels must be at most 4096"),
    ({"name": "nas", "genotype": {"nodes": [[["edge_conv", 0]]] * 3},
      "prediction": [10**6]}, "model.prediction must be a list of widths in 1…4096"),
])
def test_widths_and_sizes_are_bounded(model, msg):
    """Absurd sizes (a 720 GB `channels: 300000`) are one line, before any allocation."""
    import time

    from pointgcn.errors import ConfigError

    start = time.perf_counter()
    with pytest.raises(ConfigError, match=msg):
        build_model({**_small(model), **model})
    assert time.perf_counter() - start < 5


def test_required_floats_are_not_null():
    from pointgcn.errors import ConfigError

    with pytest.raises(ConfigError, match="train.lr must be a finite number > 0, got None"):
        resolve_train({"lr": None})
    with pytest.raises(ConfigError, match=r"model.dropout must be a number in \[0, 1\), got None"):
        build_model({"n_blocks": 2, "channels": 8, "k": 4, "dropout": None})
