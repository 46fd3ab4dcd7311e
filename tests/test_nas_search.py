"""End to end on a handful of synthetic shapes: SGAS → genotype → `pointgcn train` → ONNX
(and on synthetic rooms for segmentation); LC-NAS sweep → table, model cards, candidates, Pareto plot; torchrun with 2 processes;
bad input → exit 2 with one line."""
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from apps.cli import main
from pointgcn.data.build import build_datasets
from pointgcn.data.synthetic.shapes import write_shapes
from pointgcn.errors import ConfigError
from pointgcn.models import build_model
from pointgcn.nas.genotype import load_genotype
from pointgcn.nas.latreg import fit, save_latreg

from test_nas_latency import synthetic_rows

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[1]
MODEL = dict(cells=1, channels=4, k=4, fusion_channels=8, prediction=[8], dropout=0.0)
SEARCH = dict(warmup_epochs=0, decision_freq=1, post_epochs=0, epochs=2, batch_size=4,
              batch_increase=1, max_batches=2, arch_lr=0.01)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """13 classes × 2 synthetic shapes (one train, one test each), cached at 32 points."""
    root = tmp_path_factory.mktemp("nas_shapes")
    write_shapes(root, n_per_class=2, seed=0)
    cache = root / "cache"
    old = os.environ.get("POINTGCN_CACHE")
    os.environ["POINTGCN_CACHE"] = str(cache)
    cfg = {"seed": 0, "data": _data(root)}
    build_datasets(cfg, ("train", "val", "test"))  # prepare the cache once for every test
    yield root
    if old is None:
        os.environ.pop("POINTGCN_CACHE", None)
    else:
        os.environ["POINTGCN_CACHE"] = old


def _data(root):
    return {"dataset": "modelnet40", "root": str(root / "ModelNet40"), "n_points": 32,
            "val_fraction": 0.3, "augment": False}


def _config(path: Path, root: Path, **extra) -> Path:
    cfg = {"name": "tiny", "seed": 0, "data": _data(root), "model": dict(MODEL),
           "search": dict(SEARCH), **extra}
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_sgas_search_trains_and_exports(shapes, tmp_path, capsys):
    cfg = _config(tmp_path / "search.yaml", shapes)
    out = tmp_path / "sgas"
    assert main(["search", str(cfg), "--method", "sgas", "--criterion", "2", "--out", str(out),
                 "--no-progress"]) == 0
    assert "genotype:" in capsys.readouterr().out
    genotype = load_genotype(out / "genotype.yaml").validate()  # 2 kept edges per node
    log = [json.loads(line) for line in (out / "search_log.jsonl").read_text().splitlines()]
    assert len(log) == 2 and [r["decision"]["epoch"] for r in log] == [1, 2]
    assert np.array(log[-1]["alpha"]).shape == (9, 10)
    summary = json.loads((out / "search.json").read_text())
    assert summary["criterion"] == 2 and len(summary["decisions"]) == 2
    assert sorted(genotype.meta["forced_edges"]) == sorted(  # the 4 edges not decided in time
        e for e in range(9) if e not in [d["edge"] for d in summary["decisions"]]
        and genotype.edge_ops()[e] != "none")

    # `pointgcn train` on the genotype file, then one more step by hand and ONNX
    train_cfg = {"name": "nas-train", "seed": 0, "data": _data(shapes),
                 "model": {"name": "nas", "genotype": str(out / "genotype.yaml"),
                           **{k: v for k, v in MODEL.items() if k not in ("cells", "k")}},
                 "train": {"epochs": 1, "batch_size": 4}}
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(train_cfg))
    assert main(["train", str(tmp_path / "train.yaml"), "--out", str(tmp_path / "run"),
                 "--no-progress"]) == 0
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()

    model = build_model({**train_cfg["model"], "n_classes": 13, "in_channels": 3})
    x, y = torch.randn(4, 3, 32), torch.randint(0, 13, (4,))
    before = [p.detach().clone() for p in model.parameters()]
    loss = torch.nn.functional.cross_entropy(model.train()(x), y)
    loss.backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    assert torch.isfinite(loss)
    assert sum(not torch.equal(a, b) for a, b in zip(before, model.parameters())) > 10

    import onnxruntime as ort

    from pointgcn.export import export_onnx
    model.eval()
    export_onnx(model, tmp_path / "m.onnx", points=32, batch=1, parity=False)
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    xe = torch.randn(1, 3, 32)
    got = sess.run(None, {sess.get_inputs()[0].name: xe.numpy()})[0]
    np.testing.assert_allclose(got, model(xe).detach().numpy(), atol=1e-4)


def test_lcnas_sweep_writes_table_cards_candidates_and_pareto(shapes, tmp_path, capsys):
    rows = synthetic_rows(120, seed=5)
    for r in rows:  # a regressor "fitted" at the tiny deployment size of this test
        r["config"] = {"points": 32, "width": 4, "cells": 1, "k": 4, "task": "classification"}
    reg, _ = fit(rows, steps=300, hidden=32)
    save_latreg(reg, tmp_path / "latreg.pt")
    cfg = _config(tmp_path / "lc.yaml", shapes, final={"train": {"epochs": 1, "batch_size": 4}})
    out = tmp_path / "sweep"
    # 0.01 ms: below every latency the regressor saw (≥ 4 ms) and beyond any CPU → missed
    assert main(["search", str(cfg), "--method", "lcnas", "--latreg", str(tmp_path / "latreg.pt"),
                 "--targets", "0.01,1000", "--out", str(out), "--no-progress"]) == 0
    captured = capsys.readouterr()
    printed, warned = captured.out, captured.err.strip().splitlines()
    assert "| target (ms) |" in printed and "test accuracy" in printed
    assert "| MISSED (+" in printed and "MISSED: measured more than 10% above" in printed
    assert len(warned) == 2 and warned[0].startswith("warning: target 0.01 ms lies below every "
                                                     "latency the regressor was trained on")
    assert warned[1].startswith("warning: target 0.01 ms missed: measured")
    table = json.loads((out / "table.json").read_text())
    assert [r["target_ms"] for r in table] == [0.01, 1000.0]
    assert [r["missed_target"] for r in table] == [True, False]
    assert "MISSED" in (out / "table.md").read_text()
    for r in table:
        assert r["predicted_ms"] > 0 and r["measured_ms"] > 0 and r["params"] > 0
        assert 0 <= r["val_accuracy"] <= 1 and 0 <= r["test_accuracy"] <= 1
    cands = json.loads((out / "candidates.json").read_text())["models"]
    assert len(cands) == 2
    for c, r in zip(cands, table):
        file = out / c["file"]
        assert file.is_file() and not Path(c["file"]).is_absolute()
        import hashlib
        assert c["sha256"] == hashlib.sha256(file.read_bytes()).hexdigest()
        assert (c["task"], c["in_channels"], c["points"]) == ("classification", 3, 32)
        assert c["accuracy"]["metric"] == "oa" and "test split" in c["accuracy"]["data"]
        assert c["latency_ms"]["measured"] == r["measured_ms"]
        assert c["missed_target"] == r["missed_target"]
        card = json.loads((file.parent / "model_card.json").read_text())
        assert card["genotype"]["cells"] == 1 and card["accuracy"]["test"] == r["test_accuracy"]
        assert card["latency_ms"]["target"] == r["target_ms"]
        assert card["latency_ms"]["missed_target"] == r["missed_target"]
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    # the export engineer's budget selection reads the file as a manifest
    from pointgcn.export import load_candidates
    loaded = load_candidates(out / "candidates.json")
    assert [c.name for c in loaded] == [c["name"] for c in cands]
    assert all(c.path.is_file() for c in loaded)


@pytest.mark.skipif(shutil.which("torchrun") is None and not (Path(sys.executable).parent
                                                              / "torchrun").exists(),
                    reason="torchrun not installed")
def test_search_under_torchrun_with_two_processes(shapes, tmp_path):
    cfg = _config(tmp_path / "dist.yaml", shapes)
    out = tmp_path / "dist"
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    proc = subprocess.Popen([torchrun, "--standalone", "--nproc_per_node=2", "-m", "apps.cli",
                             "search", str(cfg), "--method", "sgas", "--out", str(out),
                             "--no-progress"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:  # end the workers too, not only torchrun
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    assert proc.returncode == 0, stderr[-2000:]
    summary = json.loads((out / "search.json").read_text())
    assert summary["world"] == 2  # α checksums were compared across ranks at each decision
    load_genotype(out / "genotype.yaml").validate()


@pytest.mark.parametrize("extra,msg", [
    (["--method", "lcnas"], "latency regressor"),
    (["--method", "lcnas", "--latreg", "NOPE.pt", "--target-ms", "5"], "not found"),
    (["--targets", "4,x"], "--targets"),
    (["--method", "sgas", "--targets", "4,5"], "LC-NAS sweep"),
    (["--method", "sgas", "--lambda", "0.1"], "LC-NAS options"),
    (["search.criterion=5"], "criterion"),
    (["search.bogus=1"], "unknown search keys"),
])
def test_search_cli_bad_input(shapes, tmp_path, capsys, extra, msg):
    cfg = _config(tmp_path / "c.yaml", shapes)
    overrides = [a for a in extra if "=" in a]
    argv = ["search", str(cfg), *overrides, "--out", str(tmp_path / "o")] + \
        [a for a in extra if "=" not in a]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and msg in err[0], err
    assert not (tmp_path / "o").exists()


def test_bad_genotype_and_missing_config(tmp_path, capsys):
    assert main(["search", str(tmp_path / "none.yaml")]) == 2
    bad = tmp_path / "t.yaml"
    bad.write_text(yaml.safe_dump({"model": {"name": "nas", "genotype": {
        "nodes": [[["gin", 0], ["gat", 5]], [], []]}}}))
    with pytest.raises(ConfigError, match="cannot read state 5"):
        build_model(str(bad))
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_search_json_is_written_atomically(shapes, tmp_path, capsys, monkeypatch):
    """A disk that fills up while search.json is written leaves no (partial) search.json."""
    real = Path.write_text

    def disk_full(self, text, *a, **kw):
        if self.name.startswith((".search.", "search.")) and self.name.endswith(".json"):
            real(self, text[:len(text) // 2], *a, **kw)
            raise OSError(28, "No space left on device")
        return real(self, text, *a, **kw)
    monkeypatch.setattr(Path, "write_text", disk_full)
    cfg = _config(tmp_path / "search.yaml", shapes,
                  search={**SEARCH, "epochs": 1, "max_batches": 1})
    out = tmp_path / "full"
    assert main(["search", str(cfg), "--method", "sgas", "--out", str(out),
                 "--no-progress"]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert (out / "genotype.yaml").is_file()          # written before, and complete
    assert not (out / "search.json").exists()
    assert [p.name for p in out.iterdir() if "search." in p.name and ".json" in p.name
            and not p.name.endswith("jsonl")] == []   # no temp file left behind either


def test_sgas_on_synthetic_rooms_segments(synth_root, tmp_path, capsys):
    """The rooms path: S3DIS raw layout → blocks → segmentation supernet → genotype → train."""
    data = {"dataset": "s3dis", "root": str(synth_root / "Stanford3dDataset_v1.2_Aligned_Version"),
            "n_points": 64, "block": 2.0, "stride": 2.0, "val_fraction": 0.25, "augment": False}
    cfg = tmp_path / "search.yaml"
    cfg.write_text(yaml.safe_dump({"name": "rooms", "seed": 0, "data": data,
                                   "model": dict(MODEL), "search": dict(SEARCH)}))
    out = tmp_path / "sgas"
    assert main(["search", str(cfg), "--method", "sgas", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "val miou" in printed and "genotype:" in printed
    assert json.loads((out / "search.json").read_text())["key_metric"] == "miou"
    load_genotype(out / "genotype.yaml").validate()

    train_cfg = {"name": "nas-rooms", "seed": 0, "data": data,
                 "model": {"name": "nas", "genotype": str(out / "genotype.yaml"),
                           **{k: v for k, v in MODEL.items() if k not in ("cells", "k")}},
                 "train": {"epochs": 1, "batch_size": 4}}
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(train_cfg))
    assert main(["train", str(tmp_path / "train.yaml"), "--out", str(tmp_path / "run"),
                 "--no-progress"]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["key_metric"] == "miou" and 0.0 <= metrics["last"]["miou"] <= 1.0
    model = build_model({**train_cfg["model"], "n_classes": 13, "in_channels": 9,
                         "task": "segmentation"})
    assert model.eval()(torch.randn(2, 9, 64)).shape == (2, 13, 64)
