"""`classify` reports calibrated confidence and entropy, and --min-confidence marks a shape
uncertain (−1); the temperature lowers confidence without changing the class."""
import csv
import io
import json

import numpy as np
import pytest
import torch
from conftest import tiny_model

from apps.cli import main
from pointgcn.io import PointCloud, write_ply
from pointgcn.models import build_model, save_checkpoint


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("conf")
    cfg = {"data": {"dataset": "modelnet40", "n_points": 64},
           "model": tiny_model(in_channels=3, n_classes=5, task="classification")}
    torch.manual_seed(3)
    model = build_model(cfg).eval()
    with torch.no_grad():  # sharpen it so confidence is clearly above chance
        last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
        last.weight.mul_(20)
    for t in (1.0, 4.0):
        save_checkpoint(d / f"t{t:g}.pt", model, cfg,
                        meta={"class_names": list("abcde"), "temperature": t})
    pts = np.random.default_rng(0).normal(size=(300, 3))
    write_ply(d / "s.ply", PointCloud(pts.astype(np.float64)))
    return d


def _row(setup, capsys, weights, *extra):
    assert main(["classify", str(setup / "s.ply"), "--weights", str(setup / weights),
                 "--top", "5", "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)[0]


def test_confidence_entropy_and_temperature(setup, capsys):
    sharp, soft = _row(setup, capsys, "t1.pt"), _row(setup, capsys, "t4.pt")
    for row in (sharp, soft):
        p = np.array([r["probability"] for r in row["ranking"]])
        assert p.sum() == pytest.approx(1.0, abs=1e-6)          # all five classes listed
        assert row["confidence"] == pytest.approx(p.max())
        assert row["entropy"] == pytest.approx(-(p * np.log(p)).sum())
        assert row["class"] == row["ranking"][0]["class"] and row["index"] >= 0
    assert soft["index"] == sharp["index"]                       # T changes no label
    assert soft["confidence"] < sharp["confidence"] and soft["entropy"] > sharp["entropy"]


def test_min_confidence(setup, capsys):
    row = _row(setup, capsys, "t4.pt")
    c = row["confidence"]
    low = _row(setup, capsys, "t4.pt", "--min-confidence", f"{c + 1e-3:.6f}")
    assert low["class"] == "uncertain" and low["index"] == -1
    assert low["ranking"] == row["ranking"]                      # the ranking is still given
    kept = _row(setup, capsys, "t4.pt", "--min-confidence", f"{max(c - 1e-3, 0):.6f}")
    assert kept["index"] == row["index"]
    assert main(["classify", str(setup / "s.ply"), "--weights", str(setup / "t4.pt"),
                 "--csv", "--min-confidence", "1"]) == 0
    table = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert table[0][-3:] == ["prediction", "confidence", "entropy"]
    assert table[1][-3] == "uncertain" and float(table[1][-2]) == pytest.approx(c, abs=1e-6)
    assert main(["classify", str(setup / "s.ply"), "--weights", str(setup / "t4.pt"),
                 "--min-confidence", "1.5"]) == 2
    assert "--min-confidence" in capsys.readouterr().err
