"""Latency-bounded model choice: ranking, tie-breaks, the none-fits error, the cache, real models."""
import json

import numpy as np
import pytest
import torch

from apps.cli import main
from pointgcn.errors import InputError
from pointgcn.export.budget import Candidate, LatencyCache, load_candidates, select_model
from pointgcn.models import build_model, save_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

FINGERPRINT = {"cpu": "test-cpu", "cores": 2, "torch": "x", "onnxruntime": "y", "cuda": None}


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("POINTGCN_CACHE", str(tmp_path / "cache"))


def _candidates(tmp_path, spec):
    """spec: [(name, accuracy, fake p95 ms)] → candidates with distinct files + fake measure."""
    cands, fake = [], {}
    for name, acc, ms in spec:
        f = tmp_path / f"{name}.onnx"
        f.write_bytes(name.encode())  # distinct content → distinct sha256
        cands.append(Candidate(name=name, path=f, task="segmentation", metric="miou",
                               accuracy=acc))
        fake[name] = ms
    calls = []

    def measure(cand, **kw):
        calls.append((cand.name, kw["points"], kw["batch"]))
        return fake[cand.name]
    return cands, measure, calls


def _cache(tmp_path):
    return LatencyCache(tmp_path / "lat.json", fingerprint=FINGERPRINT)


def test_picks_most_accurate_within_budget(tmp_path):
    cands, measure, _ = _candidates(tmp_path, [("big", 0.70, 40.0), ("mid", 0.62, 9.0),
                                               ("small", 0.55, 3.0)])
    sel = select_model(cands, 10, points=4096, measure=measure, cache=_cache(tmp_path))
    assert sel.choice.name == "mid" and sel.p95_ms == 9.0
    status = {r["name"]: r["status"] for r in sel.rows}
    assert status["big"].startswith("rejected: p95 40.0 ms > budget 10 ms")
    assert status["small"].startswith("within budget, less accurate")
    assert "picked mid" in sel.reason and "big" in sel.reason and "small" in sel.reason
    assert select_model(cands, 100, points=4096, measure=measure, cache=False).choice.name == "big"
    assert select_model(cands, 3, points=4096, measure=measure, cache=False).choice.name == "small"


def test_ties_break_by_latency_then_name(tmp_path):
    cands, measure, _ = _candidates(tmp_path, [("b", 0.6, 5.0), ("a", 0.6, 5.0),
                                               ("c", 0.6, 4.0)])
    assert select_model(cands, 10, points=512, measure=measure, cache=False).choice.name == "c"
    assert select_model(cands[:2], 10, points=512, measure=measure,
                        cache=False).choice.name == "a"


def test_none_fits_names_the_fastest(tmp_path):
    cands, measure, _ = _candidates(tmp_path, [("x", 0.7, 30.0), ("y", 0.5, 12.3)])
    with pytest.raises(InputError, match=r"no candidate meets 5 ms at N=4096; fastest is y at "
                                         r"12\.3 ms"):
        select_model(cands, 5, points=4096, measure=measure, cache=False)


def test_cache_hits_and_misses(tmp_path):
    cands, measure, calls = _candidates(tmp_path, [("p", 0.6, 5.0), ("q", 0.5, 2.0)])
    cache = _cache(tmp_path)
    first = select_model(cands, 10, points=1024, measure=measure, cache=cache)
    assert len(calls) == 2 and not any(r["cached"] for r in first.rows)
    second = select_model(cands, 10, points=1024, measure=measure, cache=cache)
    assert len(calls) == 2 and all(r["cached"] for r in second.rows)
    select_model(cands, 10, points=2048, measure=measure, cache=cache)   # other N: measured
    select_model(cands, 10, points=1024, batch=4, measure=measure, cache=cache)  # other batch
    assert len(calls) == 6
    cands[0].path.write_bytes(b"retrained")                             # new file: measured
    select_model(cands, 10, points=1024, measure=measure, cache=cache)
    assert calls[-1] == ("p", 1024, 1) and len(calls) == 7
    other_device = LatencyCache(cache.path, fingerprint={**FINGERPRINT, "cpu": "other"})
    select_model(cands, 10, points=1024, measure=measure, cache=other_device)
    assert len(calls) == 9
    stored = json.loads(cache.path.read_text())
    assert len(stored) == 9 and all("p95_ms" in v for v in stored.values())


def test_task_filter_metric_mix_and_manifest(tmp_path):
    (tmp_path / "w").mkdir()
    for name in ("seg", "cls"):
        (tmp_path / "w" / f"{name}.onnx").write_bytes(name.encode())
    manifest = tmp_path / "w" / "manifest.json"
    manifest.write_text(json.dumps({"models": [
        {"name": "seg", "file": "seg.onnx", "task": "segmentation",
         "accuracy": {"metric": "miou", "value": 0.6, "data": "s3dis area 5"}},
        {"name": "cls", "file": "cls.onnx", "task": "classification",
         "accuracy": {"metric": "oa", "value": 0.9}}]}))
    cands = load_candidates(manifest)
    assert cands[0].path == tmp_path / "w" / "seg.onnx" and cands[1].metric == "oa"

    def measure(c, **kw):
        return 1.0
    sel = select_model(cands, 5, points=64, task="classification", measure=measure, cache=False)
    assert sel.choice.name == "cls" and "rejected: task segmentation" in sel.reason
    cands[1].extra["in_channels"] = 3
    with pytest.raises(InputError, match="no candidate for task 'classification' with 6 input"):
        select_model(cands, 5, points=64, task="classification", in_channels=6,
                     measure=measure, cache=False)
    with pytest.raises(InputError, match="different accuracy metrics"):
        select_model(cands, 5, points=64, measure=measure, cache=False)
    bad = Candidate(name="seg", path=cands[0].path, sha256="0" * 64)
    with pytest.raises(InputError, match="sha256 mismatch"):
        select_model([bad], 5, points=64, measure=measure, cache=False)
    with pytest.raises(InputError, match="file not found"):
        select_model([Candidate("gone", tmp_path / "gone.onnx")], 5, points=64,
                     measure=measure, cache=False)
    with pytest.raises(InputError, match="manifest not found"):
        load_candidates(tmp_path / "nope.json")


TINY = dict(n_blocks=3, k=4, fusion_channels=16, prediction=[16, 8], dropout=0.0,
            in_channels=6, n_classes=5)


def _real_candidates(tmp_path):
    torch.manual_seed(0)
    small = tmp_path / "small.pt"
    save_checkpoint(small, build_model({**TINY, "channels": 8}), {"model": {**TINY, "channels": 8}})
    big_cfg = {**TINY, "channels": 96, "n_blocks": 7, "k": 8, "fusion_channels": 256}
    big = tmp_path / "big.pt"
    save_checkpoint(big, build_model(big_cfg), {"model": big_cfg})
    return [Candidate("small", small, "segmentation", "miou", 0.5),
            Candidate("big", big, "segmentation", "miou", 0.6)]


@pytest.mark.parametrize("runtime", ["torch", "onnx"])
def test_real_measured_models(tmp_path, runtime):
    cands = _real_candidates(tmp_path)
    sel = select_model(cands, 1e6, points=256, runtime=runtime, runs=5, threads=1)
    assert sel.choice.name == "big"  # generous budget → the more accurate one
    p95 = {r["name"]: r["p95_ms"] for r in sel.rows}
    assert 0 < p95["small"] < p95["big"]
    between = (p95["small"] + p95["big"]) / 2  # now from the cache: deterministic
    sel = select_model(cands, between, points=256, runtime=runtime, runs=3, threads=1)
    assert sel.choice.name == "small" and all(r["cached"] for r in sel.rows)
    pred = sel.open(threads=1).predictor()  # served the way it was measured
    assert type(pred).__name__ == ("TorchPredictor" if runtime == "torch" else "OnnxPredictor")
    assert pred(np.zeros((1, 6, 64), np.float32)).shape == (1, 5, 64)


def test_bench_budget_cli(tmp_path, capsys):
    cands = _real_candidates(tmp_path)
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"models": [
        {"name": c.name, "file": c.path.name, "task": c.task,
         "accuracy": {"metric": c.metric, "value": c.accuracy}} for c in cands]}))
    out = tmp_path / "sel.json"
    assert main(["bench", "--budget-ms", "1e6", "--manifest", str(manifest), "--points", "64",
                 "--runs", "2", "--threads", "1", "--runtime", "torch", "--json", str(out)]) == 0
    assert "picked big" in capsys.readouterr().out
    assert json.loads(out.read_text())["choice"] == "big"
    assert main(["bench", "--budget-ms", "1e-6", "--manifest", str(manifest), "--points", "64",
                 "--runs", "2", "--threads", "1", "--runtime", "torch"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no candidate meets 1e-06 ms at N=64; fastest is ")
    assert "\n" not in err


def test_bench_budget_takes_shipped_names_and_refuses_configs(tmp_path, monkeypatch, capsys):
    """MODEL arguments go through the same resolver as everywhere else: a shipped name brings
    its manifest entry (accuracy); a config YAML or --model-config has no trained weights."""
    from pointgcn.models.weights import ship_checkpoint

    small, big = _real_candidates(tmp_path)
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"models": [
        {"name": "small", "file": small.path.name, "task": "segmentation",
         "accuracy": {"metric": "miou", "value": 0.5}}]}))
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    ship_checkpoint(big.path, "shipped-big", {
        "task": "segmentation", "data": "t", "command": "x", "metrics": {},
        "accuracy": {"metric": "miou", "value": 0.9, "data": "t"}}, shipped)
    monkeypatch.setenv("POINTGCN_WEIGHTS", str(shipped))
    common = ["--points", "64", "--runs", "2", "--threads", "1", "--runtime", "torch"]
    out = tmp_path / "sel.json"
    assert main(["bench", "--budget-ms", "1e6", "shipped-big", "--manifest", str(manifest),
                 *common, "--json", str(out)]) == 0
    assert "picked shipped-big (miou 0.9" in capsys.readouterr().out
    picked = json.loads(out.read_text())
    assert picked["choice"] == "shipped-big" and len(picked["candidates"]) == 2
    # without --manifest the shipped one is a candidate once, not twice
    assert main(["bench", "--budget-ms", "1e6", "shipped-big", *common, "--json", str(out)]) == 0
    assert [r["name"] for r in json.loads(out.read_text())["candidates"]] == ["shipped-big"]
    capsys.readouterr()

    config = tmp_path / "model.yaml"
    config.write_text("model: {n_blocks: 3, channels: 8}\n")
    for argv, message in (([str(config)], "config YAML has no trained weights"),
                          (["--model-config", "k=4"], "--model-config builds untrained"),
                          (["no-such-model"], "no shipped model named 'no-such-model'")):
        assert main(["bench", "--budget-ms", "1e6", *argv, "--manifest", str(manifest),
                     *common]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
