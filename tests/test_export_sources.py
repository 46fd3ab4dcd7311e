"""Model sources: one checkpoint read per load, suffix-less files and shipped names, the ONNX
cache that skips the checkpoint, class names that agree between PyTorch and onnxruntime."""
import shutil

import numpy as np
import pytest
import torch

from pointgcn.data.classes import S3DIS_CLASSES
from pointgcn.errors import InputError
from pointgcn.export.budget import Candidate, candidate_predictor, serve_candidate
from pointgcn.export.serve import load_predictor
from pointgcn.export.sources import load_source, open_checkpoint
from pointgcn.models import build_model, load_checkpoint, save_checkpoint
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


def test_open_checkpoint_reads_once_and_matches_load_checkpoint(ckpt, loads):
    model, run_config, meta = open_checkpoint(ckpt, k=3)
    assert loads == [str(ckpt)]
    assert meta["class_names"] == NAMES and run_config["data"]["n_points"] == 32
    assert run_config["model"]["k"] == 3 == model.cfg["k"]  # the model actually built
    ref = load_checkpoint(ckpt, k=3)
    x = torch.from_numpy(_x())
    with torch.no_grad():
        assert torch.equal(model(x), ref(x))


def test_load_source_reads_the_checkpoint_once(ckpt, loads):
    src = load_source(str(ckpt), ["k=3"])
    assert loads == [str(ckpt)]
    assert src.class_names == NAMES and src.model.cfg["k"] == 3
    assert src.run_config["data"]["n_points"] == 32


def test_load_predictor_takes_a_suffixless_file_reading_it_once(ckpt, tmp_path, loads):
    bare = tmp_path / "model"
    shutil.copy(ckpt, bare)
    pred, cfg = load_predictor(str(bare), threads=1)
    assert loads == [str(bare)]
    assert type(pred).__name__ == "TorchPredictor" and pred.class_names == NAMES
    assert cfg["data"]["n_points"] == 32 and cfg["model"]["k"] == 4
    with torch.no_grad():
        expected = load_checkpoint(ckpt)(torch.from_numpy(_x())).numpy()
    np.testing.assert_array_equal(pred(_x()), expected)


def test_load_predictor_by_shipped_name_and_bad_specs(ckpt, tmp_path, monkeypatch):
    folder = tmp_path / "shipped"
    folder.mkdir()
    card = {"task": "segmentation", "data": "t", "command": "x", "metrics": {},
            "accuracy": {"metric": "miou", "value": 0.5, "data": "t"}}
    ship_checkpoint(ckpt, "tiny-seg", card, folder)
    monkeypatch.setenv("POINTGCN_WEIGHTS", str(folder))
    pred, cfg = load_predictor("tiny-seg")
    assert pred.class_names == NAMES and cfg["model"]["n_classes"] == 5
    assert load_source("tiny-seg").checkpoint == folder / "tiny-seg.pt"
    yaml_file = tmp_path / "m.yaml"
    yaml_file.write_text("model: {n_blocks: 3}\n")
    with pytest.raises(InputError, match="config YAML has no trained weights"):
        load_predictor(str(yaml_file))
    with pytest.raises(InputError, match="no shipped model named 'nope'"):
        load_predictor("nope")
    with pytest.raises(InputError, match="ONNX model not found"):
        load_predictor(str(tmp_path / "gone.onnx"))
    with pytest.raises(InputError, match="is a directory"):
        load_predictor(str(folder))


def test_budget_onnx_cache_hit_never_opens_the_checkpoint(tmp_path, loads):
    """A 13-class segmenter without recorded names: S3DIS names in both runtimes; the second
    predictor comes from the cached export without unpickling the checkpoint."""
    torch.manual_seed(0)
    cfg = {**TINY, "n_classes": 13}
    path = tmp_path / "seg.pt"
    save_checkpoint(path, build_model(cfg), {"model": cfg, "data": {"n_points": 32}})
    cand = Candidate("seg", path)
    first = candidate_predictor(cand, "onnx", points=32, threads=1)
    assert loads == [str(path)]
    again, run_config = serve_candidate(cand, "onnx", points=32, threads=1)
    assert loads == [str(path)]  # cache hit: no second read
    assert type(again).__name__ == "OnnxPredictor" and again.path == first.path
    assert run_config["data"]["n_points"] == 32 and run_config["model"]["n_classes"] == 13
    torch_pred, torch_cfg = serve_candidate(cand, "torch", threads=1)
    assert len(loads) == 2
    assert again.class_names == torch_pred.class_names == list(S3DIS_CLASSES)
    assert torch_cfg["data"] == run_config["data"]
    np.testing.assert_allclose(again(_x()), torch_pred(_x()), atol=1e-4)
