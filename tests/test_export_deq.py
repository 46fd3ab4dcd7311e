"""ONNX export of the memory-efficient backbones: wt-rev as is, deq unrolled (and said so)."""
import json

import numpy as np
import pytest
import torch

from pointgcn.export import OnnxPredictor, export_onnx, read_metadata
from pointgcn.export.parity import random_clouds
from pointgcn.models import build_model
from pointgcn.nn import unrolled

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(n_blocks=4, channels=8, k=4, fusion_channels=16, prediction=[8], dropout=0.0,
            in_channels=6, n_classes=5, task="segmentation")


def test_deq_exports_as_export_iters_steps_and_the_report_says_so(tmp_path):
    torch.manual_seed(0)
    model = build_model({**TINY, "block": "deq", "deq": {"tol": 1e-6, "max_iter": 60,
                                                         "export_iters": 25}}).eval()
    out = tmp_path / "deq.onnx"
    report = export_onnx(model, out, points=32, batch=2, threads=1)
    assert report.passed and out.is_file()
    assert read_metadata(str(out))["deq_export_iters"] == [25]
    deq = report.parity["deq"]
    assert deq["export_iters"] == [25] and len(deq["vs_solved"]) == 3
    assert "25 Picard steps" in report.summary()
    saved = json.loads(out.with_suffix(".parity.json").read_text())
    assert saved["parity"]["deq"]["export_iters"] == [25]
    # the file computes the unrolled steps: equal to PyTorch under `unrolled`, not the solve
    x = random_clouds(2, 6, 48, seed=5)
    got = OnnxPredictor(out, threads=1)(x)
    with torch.no_grad(), unrolled(model):
        steps = model(torch.from_numpy(x)).numpy()
    with torch.no_grad():
        solved = model(torch.from_numpy(x)).numpy()
    assert np.abs(got - steps).max() <= 1e-4 * np.abs(steps).max()
    assert np.abs(solved - steps).max() > 0  # 25 steps are not the solve
    for row in deq["vs_solved"]:  # the report measures that gap, with the solver's stats
        assert row["max_abs"] > 0 and 0 <= row["label_agreement"] <= 1
        assert 0 < row["solver"][0]["iterations"] <= 60


def test_wt_rev_exports_with_parity(tmp_path):
    torch.manual_seed(0)
    model = build_model({**TINY, "block": "wt-rev"}).eval()
    report = export_onnx(model, tmp_path / "wt.onnx", points=32, batch=2, threads=1)
    assert report.passed and report.parity["static_graph"]["graphs"] == 1 + 3 * 2
    assert "deq" not in report.parity
    assert read_metadata(str(tmp_path / "wt.onnx")).get("deq_export_iters") is None
