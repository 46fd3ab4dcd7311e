"""Predictors divide logits by the checkpoint's temperature — eager and onnxruntime alike —
and a checkpoint without one (older files, official weights) is served as before."""
import numpy as np
import pytest
import torch
from conftest import tiny_model

from pointgcn.errors import FormatError
from pointgcn.export import export_onnx, read_metadata
from pointgcn.export.serve import open_model
from pointgcn.models import build_model, save_checkpoint


def _model():
    torch.manual_seed(0)
    return build_model({"model": {**tiny_model(), "task": "classification", "in_channels": 3,
                                  "n_classes": 4}}).eval()


def test_eager_and_onnx_apply_temperature(tmp_path):
    model = _model()
    save_checkpoint(tmp_path / "t.pt", model, {}, meta={"temperature": 2.5})
    save_checkpoint(tmp_path / "old.pt", model, {}, meta={})
    x = np.random.default_rng(0).normal(size=(2, 3, 32)).astype(np.float32)
    with torch.no_grad():
        raw = model(torch.from_numpy(x)).numpy()
    calibrated = open_model(tmp_path / "t.pt").predictor()
    assert calibrated.temperature == 2.5
    np.testing.assert_allclose(calibrated(x), raw / 2.5, rtol=1e-5, atol=1e-6)
    old = open_model(tmp_path / "old.pt").predictor()
    assert old.temperature == 1.0
    np.testing.assert_allclose(old(x), raw, rtol=1e-5, atol=1e-6)

    loaded = open_model(tmp_path / "t.pt")
    export_onnx(loaded.module, tmp_path / "t.onnx", points=32, batch=2,
                temperature=loaded.meta["temperature"])
    assert read_metadata(tmp_path / "t.onnx")["temperature"] == 2.5
    ort = open_model(tmp_path / "t.onnx").predictor()
    assert ort.temperature == 2.5
    np.testing.assert_allclose(ort(x), calibrated(x), rtol=1e-4, atol=1e-5)  # eager == ORT


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), "hot"])
def test_bad_temperature_refused(tmp_path, bad):
    save_checkpoint(tmp_path / "b.pt", _model(), {}, meta={"temperature": bad})
    with pytest.raises(FormatError, match="temperature"):
        open_model(tmp_path / "b.pt").predictor()


def test_export_stage_carries_the_temperature(tmp_path, capsys):
    from apps.cli import main

    model = _model()
    save_checkpoint(tmp_path / "t.pt", model, {"data": {"dataset": "modelnet40",
                                                        "n_points": 32}},
                    meta={"temperature": 1.75})
    assert main(["export", str(tmp_path / "t.pt"), "--out", str(tmp_path / "t.onnx"),
                 "--threads", "1"]) == 0
    capsys.readouterr()
    assert open_model(tmp_path / "t.onnx").predictor().temperature == 1.75
