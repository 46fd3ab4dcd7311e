"""`pointgcn export` / `pointgcn bench`: outputs, bad input → exit 2 with one line; timing helpers."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from apps.cli import main
from pointgcn.export import OnnxPredictor, read_metadata
from pointgcn.export.timing import latency_stats, peak_memory, time_interleaved
from pointgcn.models import build_model, save_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(n_blocks=3, channels=8, k=4, fusion_channels=16, prediction=[16, 8], dropout=0.0,
            in_channels=6, n_classes=5)


@pytest.fixture
def ckpt(tmp_path):
    path = tmp_path / "tiny.pt"
    save_checkpoint(path, build_model(TINY), {"model": TINY, "data": {"n_points": 32}},
                    meta={"class_names": ["a", "b", "c", "d", "e"]})
    return path


def test_export_cli_writes_model_report_and_int8(tmp_path, ckpt, capsys):
    out = tmp_path / "out" / "tiny.onnx"
    data = tmp_path / "clouds.npy"
    np.save(data, np.random.default_rng(0).uniform(-1, 1, (2, 6, 80)).astype(np.float32))
    assert main(["export", str(ckpt), "--out", str(out), "--quantize", "--threads", "1",
                 "--check-data", str(data)]) == 0
    text = capsys.readouterr().out
    assert "parity        passed" in text and "int8" in text
    report = json.loads(out.with_suffix(".parity.json").read_text())
    assert report["passed"] and report["parity"]["data"] == "given"
    assert [r["points"] for r in report["parity"]["labels"]] == [16, 32, 64]  # N from config
    pred = OnnxPredictor(out)
    assert pred.class_names == ["a", "b", "c", "d", "e"]
    assert pred.config["data"]["n_points"] == 32
    assert read_metadata(tmp_path / "out" / "tiny.int8.onnx")["n_classes"] == 5
    # the one way to open a model takes the .onnx like a checkpoint
    from pointgcn.export.serve import open_model
    opened = open_model(str(out), threads=1)
    assert opened.predictor().n_classes == 5 and opened.run_config["model"]["k"] == 4
    assert opened.class_names == ["a", "b", "c", "d", "e"] and opened.module is None


def test_export_checks_parity_on_clouds_of_the_models_kind_by_default(tmp_path, capsys):
    """`pointgcn export` draws procedural clouds of the model's kind (data/synthetic); the
    library, given none, checks on noise."""
    from pointgcn.export import export_onnx

    cfg = {**TINY, "in_channels": 9, "n_classes": 13}
    ckpt = tmp_path / "rooms.pt"
    save_checkpoint(ckpt, build_model(cfg), {"model": cfg, "data": {"n_points": 32}})
    out = tmp_path / "rooms.onnx"
    assert main(["export", str(ckpt), "--out", str(out), "--threads", "1"]) == 0
    report = json.loads(out.with_suffix(".parity.json").read_text())
    assert report["parity"]["data"] == "synthetic room blocks" and report["passed"]
    capsys.readouterr()
    lib = export_onnx(build_model(cfg), tmp_path / "lib.onnx", points=32, threads=1)
    assert lib.parity["data"] == "random"


def _cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "apps.cli", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def test_export_cli_missing_checkpoint_exits_2_one_line(tmp_path):
    r = _cli("export", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "m.onnx"))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "missing.pt" in lines[0]
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("args,message", [
    (["{ckpt}", "--out", "{tmp}/m.txt"], "must name a .onnx file"),
    (["{tmp}/notes.txt", "--out", "{tmp}/m.onnx"], "unknown model file type .txt"),
    (["{ckpt}", "--out", "{tmp}/m.onnx", "--opset", "11"], "opset 11 is too old"),
    (["{ckpt}", "--out", "{tmp}/m.onnx", "--check-data", "{tmp}/notes.txt"], "must be .npy"),
    (["{ckpt}", "--out", "{tmp}/m.onnx", "--check-data", "{tmp}/bad.npy"], "(B, 6, N)"),
    (["{tmp}/garbage.pt", "--out", "{tmp}/m.onnx"], "not a readable checkpoint"),
])
def test_export_cli_bad_input(tmp_path, ckpt, capsys, args, message):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "garbage.pt").write_bytes(b"\x00garbage")
    np.save(tmp_path / "bad.npy", np.zeros((2, 3, 40), np.float32))
    args = [a.format(ckpt=ckpt, tmp=tmp_path) for a in args]
    assert main(["export", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and "\n" not in err
    assert not list(tmp_path.glob("m.*"))


def test_bench_cli_json_and_markdown(tmp_path, capsys):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("model:\n" + "".join(f"  {k}: {v}\n" for k, v in TINY.items()))
    js, md = tmp_path / "b.json", tmp_path / "b.md"
    assert main(["bench", str(cfg), "--points", "64", "--runs", "3", "--warmup", "1",
                 "--threads", "1", "--no-memory", "--json", str(js), "--md", str(md),
                 "--model-config", "k=6", "--custom-knn", "off"]) == 0
    res = json.loads(js.read_text())
    row = res["results"][0]
    assert set(row["runtimes"]) == {"eager", "onnxruntime"} and row["points"] == 64
    eager, ort = row["runtimes"]["eager"], row["runtimes"]["onnxruntime"]
    assert eager["runs"] == ort["runs"] == 3 and eager["p50_ms"] <= eager["max_ms"]
    assert row["speedup_p50"] == pytest.approx(eager["p50_ms"] / ort["p50_ms"])
    assert ort["points_per_s"] == pytest.approx(64 / (ort["mean_ms"] / 1e3))
    assert row["label_agreement"] >= 0.99 and res["environment"]["threads"] == 1
    table = md.read_text()
    assert "| tiny | 64 | 1 | onnxruntime |" in table and "Environment:" in table
    # an .onnx model alone, and a model from --model-config alone
    onnx_path = tmp_path / "m.onnx"
    assert main(["export", str(cfg), "--out", str(onnx_path), "--points", "32",
                 "--no-parity"]) == 0
    assert main(["bench", str(onnx_path), "--points", "32", "--runs", "2", "--no-memory"]) == 0
    assert main(["bench", "--model-config", *[f"{k}={v}" for k, v in TINY.items()],
                 "--points", "32", "--runs", "2", "--no-memory"]) == 0
    out = capsys.readouterr().out
    assert "onnxruntime is" in out and "model-config" in out


def test_bench_cli_bad_input(tmp_path, capsys):
    assert main(["bench", str(tmp_path / "nope.pt")]) == 2
    assert main(["bench"]) == 2
    assert main(["bench", "x.yaml", "--json", str(tmp_path / "out.txt")]) == 2
    errs = capsys.readouterr().err.strip().splitlines()
    assert len(errs) == 3 and all(e.startswith("error:") for e in errs)


def test_latency_stats_and_interleaving():
    s = latency_stats([i / 1000 for i in range(1, 21)])  # 1 … 20 ms
    assert s["mean_ms"] == pytest.approx(10.5) and s["p50_ms"] == pytest.approx(10.5)
    assert s["p95_ms"] == pytest.approx(19.05) and s["min_ms"] == pytest.approx(1.0)
    order = []
    times = time_interleaved({"a": lambda: order.append("a"), "b": lambda: order.append("b")},
                             runs=3, warmup=1)
    assert order == ["a", "b"] * 4 and all(len(v) == 3 for v in times.values())


def test_peak_memory_grows_with_the_distance_matrix(tmp_path, ckpt):
    onnx_path = tmp_path / "m.onnx"
    assert main(["export", str(ckpt), "--out", str(onnx_path), "--no-parity"]) == 0
    small = peak_memory("onnx", onnx_path, points=64, batch=1, threads=1, runs=1)
    large = peak_memory("onnx", onnx_path, points=2048, batch=1, threads=1, runs=1)
    # N=2048: each kNN's distance matrix alone is 2048² float32 = 16.8 MB
    assert small["peak_mb"] is not None and large["peak_mb"] > small["peak_mb"] + 10
    # PyTorch: a 4096-channel fusion over N=4096 points holds at least one 4096² float32
    # tensor (64 MiB) at once, and a few copies of it (216 MiB measured), not the ≈ 240 MiB
    # of the loaded process on top (a peak not measured from the loaded baseline)
    wide = tmp_path / "wide.pt"
    wide_model = {**TINY, "fusion_channels": 4096}
    save_checkpoint(wide, build_model(wide_model), {"model": wide_model})
    torch_peak = peak_memory("torch", wide, points=4096, batch=1, threads=1, runs=1)
    assert 64 <= torch_peak["peak_mb"] < 400, torch_peak
