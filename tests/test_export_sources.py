"""Opening models (`open_model`, the one way): one checkpoint read per open, suffix-less files
and shipped names, the ONNX cache that skips the checkpoint, class names that agree between
PyTorch and onnxruntime."""
import shutil

import numpy as np
import pytest
import torch

from pointgcn.data.classes import S3DIS_CLASSES
from pointgcn.errors import InputError
from pointgcn.export.budget import Candidate, open_candidate
from pointgcn.export.serve import open_model
from pointgcn.models import build_model, save_checkpoint
from pointgcn.models.weights import ship_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(n_blocks=3, channels=8, k=4, fusion_channels=16, prediction=[16, 8], dropout=0.0,
            in_channels=6, n_classes=5)
NAMES = ["a", "b", "c", "d", "e"]


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("POINTGCN_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def ckpt(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "tiny.pt"
    save_checkpoint(path, build_model(TINY), {"model": TINY, "data": {"n_points": 32}},
                    meta={"class_names": NAMES})
    return path


@pytest.fixture
def loads(monkeypatch):
    """Paths passed to torch.load (each one is a full unpickling of the file)."""
    seen, real = [], torch.load

    def counting(f, *a, **kw):
        seen.append(str(f))
        return real(f, *a, **kw)
    monkeypatch.setattr(torch, "load", counting)
    return seen


def _x(channels=6, n=32):
    return np.random.default_rng(0).uniform(-1, 1, (1, channels, n)).astype(np.float32)


def test_open_model_reads_a_checkpoint_once_with_overrides(ckpt, loads):
    opened = open_model(ckpt, overrides={"k": 3})
    assert loads == [str(ckpt)]
    assert opened.meta["class_names"] == NAMES == opened.class_names
    assert opened.run_config["data"]["n_points"] == 32
    assert opened.run_config["model"]["k"] == 3 == opened.module.cfg["k"]  # as built
    same = open_model(str(ckpt), overrides=["k=3"])  # command-line style overrides
    x = torch.from_numpy(_x())
    with torch.no_grad():
        assert torch.equal(opened.module(x), same.module(x))


def test_open_model_takes_a_suffixless_file_reading_it_once(ckpt, tmp_path, loads):
    bare = tmp_path / "model"
    shutil.copy(ckpt, bare)
    opened = open_model(str(bare), threads=1)
    pred, cfg = opened.predictor(), opened.run_config
    assert loads == [str(bare)]
    assert type(pred).__name__ == "TorchPredictor" and pred.class_names == NAMES
    assert cfg["data"]["n_points"] == 32 and cfg["model"]["k"] == 4
    with torch.no_grad():
        expected = open_model(ckpt).module(torch.from_numpy(_x())).numpy()
    np.testing.assert_array_equal(pred(_x()), expected)


def test_open_model_builds_configs_with_random_weights_only_when_asked(ckpt, tmp_path):
    yaml_file = tmp_path / "m.yaml"
    yaml_file.write_text("model: {n_blocks: 3, channels: 8, k: 4, in_channels: 6}\n")
    with pytest.raises(InputError, match="config YAML has no trained weights"):
        open_model(yaml_file)
    a = open_model(yaml_file, random_weights=True, overrides=["k=3"], seed=1)
    b = open_model(None, random_weights=True, seed=1,
                   overrides={"n_blocks": 3, "channels": 8, "k": 3, "in_channels": 6})
    assert a.label == "m" and a.module.cfg["k"] == 3 and a.meta == {}
    with torch.no_grad():  # the same seed draws the same weights
        assert torch.equal(a.module(torch.from_numpy(_x())), b.module(torch.from_numpy(_x())))
    with pytest.raises(InputError, match="overrides to build one"):
        open_model(None, random_weights=True)


def test_open_model_by_shipped_name_and_bad_specs(ckpt, tmp_path, monkeypatch):
    folder = tmp_path / "shipped"
    folder.mkdir()
    card = {"task": "segmentation", "data": "t", "command": "x", "metrics": {},
            "accuracy": {"metric": "miou", "value": 0.5, "data": "t"}}
    ship_checkpoint(ckpt, "tiny-seg", card, folder)
    monkeypatch.setenv("POINTGCN_WEIGHTS", str(folder))
    opened = open_model("tiny-seg")
    assert opened.predictor().class_names == NAMES
    assert opened.run_config["model"]["n_classes"] == 5
    assert opened.path == folder / "tiny-seg.pt" and opened.label == "tiny-seg"
    yaml_file = tmp_path / "m.yaml"
    yaml_file.write_text("model: {n_blocks: 3}\n")
    with pytest.raises(InputError, match="config YAML has no trained weights"):
        open_model(str(yaml_file))
    with pytest.raises(InputError, match="no shipped model named 'nope'"):
        open_model("nope")
    with pytest.raises(InputError, match="ONNX model not found"):
        open_model(str(tmp_path / "gone.onnx"))
    with pytest.raises(InputError, match="is a directory"):
        open_model(str(folder))


def test_budget_onnx_cache_hit_never_opens_the_checkpoint(tmp_path, loads):
    """A 13-class segmenter without recorded names: S3DIS names in both runtimes; the second
    predictor comes from the cached export without unpickling the checkpoint."""
    torch.manual_seed(0)
    cfg = {**TINY, "n_classes": 13}
    path = tmp_path / "seg.pt"
    save_checkpoint(path, build_model(cfg), {"model": cfg, "data": {"n_points": 32}})
    cand = Candidate("seg", path)
    first = open_candidate(cand, "onnx", points=32, threads=1).predictor()
    assert loads == [str(path)]
    opened = open_candidate(cand, "onnx", points=32, threads=1)
    again, run_config = opened.predictor(), opened.run_config
    assert loads == [str(path)]  # cache hit: no second read
    assert type(again).__name__ == "OnnxPredictor" and again.path == first.path
    assert run_config["data"]["n_points"] == 32 and run_config["model"]["n_classes"] == 13
    opened = open_candidate(cand, "torch", threads=1)
    torch_pred, torch_cfg = opened.predictor(), opened.run_config
    assert len(loads) == 2
    assert again.class_names == torch_pred.class_names == list(S3DIS_CLASSES)
    assert torch_cfg["data"] == run_config["data"]
    np.testing.assert_allclose(again(_x()), torch_pred(_x()), atol=1e-4)
