"""`pointgcn eval` says how far to trust its numbers: bootstrap intervals over the test items,
ECE before/after the model's temperature (equal to an independent computation), a
reliability diagram, and a paired `--compare` that cannot tell a model from itself."""
import json

import numpy as np
import pytest
import torch
from conftest import tiny_model

from apps.cli import main
from pointgcn.data.build import build_datasets
from pointgcn.engine.bootstrap import bootstrap_ci
from pointgcn.engine.calibration import ece, softmax
from pointgcn.engine.evaluator import _batches
from pointgcn.export.serve import open_model
from pointgcn.models import build_model, save_checkpoint


@pytest.fixture(scope="module")
def models(synth_root, tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    cfg = {"data": {"dataset": "modelnet40", "root": str(synth_root / "ModelNet40"),
                    "n_points": 64}}
    n = len(build_datasets(cfg, ("test",)).class_names)
    cfg["model"] = tiny_model(in_channels=3, n_classes=n, task="classification")
    for name, seed, t in (("a", 0, 0.5), ("b", 1, 1.0)):
        torch.manual_seed(seed)
        save_checkpoint(d / f"{name}.pt", build_model(cfg).eval(), cfg,
                        meta={"temperature": t})
    return d, cfg


def test_intervals_and_calibration(models, tmp_path, capsys):
    d, cfg = models
    assert main(["eval", "--ckpt", str(d / "a.pt"), "--json", str(tmp_path / "m.json"),
                 "--reliability", str(tmp_path / "r.png"), "--no-progress",
                 "--bootstrap", "200"]) == 0
    printed = capsys.readouterr().out
    assert "bootstrap interval over" in printed and "calibration: ECE" in printed
    m = json.loads((tmp_path / "m.json").read_text())["shapes"]
    # independent: run the predictor over the test split here
    test = build_datasets(cfg, ("test",)).test
    predictor = open_model(d / "a.pt").predictor()
    logits, labels = zip(*[(predictor(f), y) for f, y in _batches(test, 8)])
    logits, labels = np.concatenate(logits), np.concatenate(labels)
    c = m["calibration"]
    assert c["temperature"] == 0.5 and c["points"] == len(test)
    assert c["ece_after"] == pytest.approx(ece(softmax(logits), labels, 15))
    assert c["ece_before"] == pytest.approx(ece(softmax(logits * 0.5), labels, 15))
    mats = np.zeros((len(labels), logits.shape[1], logits.shape[1]), np.int64)
    mats[np.arange(len(labels)), labels, logits.argmax(1)] = 1
    want = bootstrap_ci(mats, 200, 0)
    for k in ("oa", "macc", "miou"):
        assert m["ci"][k] == pytest.approx(want[k])
        assert m["ci"][k]["low"] <= m[k] <= m["ci"][k]["high"]
    assert m["ci"]["items"] == len(test)
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare(models, tmp_path, capsys):
    d, _ = models
    assert main(["eval", "--compare", str(d / "a.pt"), str(d / "a.pt"), "--no-progress",
                 "--bootstrap", "200", "--json", str(tmp_path / "same.json")]) == 0
    out = capsys.readouterr().out
    assert out.count("not distinguishable from zero") == 3
    same = json.loads((tmp_path / "same.json").read_text())["compare"]["shapes"]
    assert all(same[k]["delta"] == 0 and not same[k]["distinguishable"]
               for k in ("oa", "macc", "miou"))
    assert main(["eval", "--compare", str(d / "a.pt"), str(d / "b.pt"), "--no-progress",
                 "--bootstrap", "200", "--json", str(tmp_path / "ab.json")]) == 0
    ab = json.loads((tmp_path / "ab.json").read_text())
    r = ab["compare"]["shapes"]["oa"]
    assert r["delta"] == pytest.approx(ab["a"]["shapes"]["oa"] - ab["b"]["shapes"]["oa"])
    assert r["low"] <= r["delta"] <= r["high"]


@pytest.mark.parametrize("argv, message", [
    (["--compare", "A", "B", "--ckpt", "A"], "--ckpt or --compare"),
    (["--ckpt", "A", "--bootstrap", "-1"], "--bootstrap"),
    (["--compare", "A", "A", "--bootstrap", "0"], "--bootstrap ≥ 1"),
])
def test_refusals(models, tmp_path, capsys, argv, message):
    d, _ = models
    argv = [str(d / "a.pt") if x == "A" else x for x in argv]
    assert main(["eval", *argv, "--json", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.json").exists()


def test_partnet_and_rooms_protocols(synth_root, tmp_path, capsys):
    cfg = {"data": {"dataset": "partnet", "root": str(synth_root / "sem_seg_h5"),
                    "category": "Chair", "n_points": 128}}
    data = build_datasets(cfg, ("test",))
    cfg["model"] = tiny_model(in_channels=data.in_channels, n_classes=len(data.class_names),
                              task="part_segmentation")
    save_checkpoint(tmp_path / "p.pt", build_model(cfg).eval(), cfg, meta={"temperature": 2.0})
    assert main(["eval", "--compare", str(tmp_path / "p.pt"), str(tmp_path / "p.pt"),
                 "--bootstrap", "100", "--no-progress", "--json", str(tmp_path / "p.json"),
                 "--reliability", str(tmp_path / "p.png")]) == 0
    out = json.loads((tmp_path / "p.json").read_text())
    p = out["a"]["partnet"]
    assert p["ci"]["part_miou"]["value"] == pytest.approx(p["part_miou"])
    assert p["ci"]["shape_miou"]["value"] == pytest.approx(p["shape_miou"])
    assert p["ci"]["items"] == len(data.test) and p["calibration"]["temperature"] == 2.0
    assert not out["compare"]["partnet"]["part_miou"]["distinguishable"]
    assert "Δpart mIoU" in capsys.readouterr().out and (tmp_path / "p.png").is_file()

    rooms = {"data": {"dataset": "s3dis", "n_points": 128, "block": 2.0, "stride": 2.0,
                      "root": str(synth_root / "Stanford3dDataset_v1.2_Aligned_Version")},
             "model": tiny_model(in_channels=9, n_classes=13)}
    save_checkpoint(tmp_path / "r.pt", build_model(rooms).eval(), rooms)
    assert main(["eval", "--ckpt", str(tmp_path / "r.pt"), "--bootstrap", "100",
                 "--no-progress", "--json", str(tmp_path / "r.json")]) == 0
    r = json.loads((tmp_path / "r.json").read_text())
    full, block = r["full_resolution"], r["per_block"]
    assert full["ci"]["items"] == full["rooms"] and full["ci"]["over"] == "rooms"
    assert full["ci"]["miou"]["value"] == pytest.approx(full["miou"])
    assert block["ci"]["items"] * 128 == block["points"] and "correlated" in block["ci"]["over"]
    assert full["calibration"]["points"] == full["points"]
    assert "(none recorded)" in capsys.readouterr().out
