"""Every shipped config is valid: known keys, a model that builds, sane data/train sections."""
from pathlib import Path

import pytest

from pointgcn.config import load_config
from pointgcn.data.build import resolve_data
from pointgcn.engine.optim import resolve_train
from pointgcn.models import build_model

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))


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
