"""Latency collection (rows, growth, schema), LatReg on a known latency function, the CLIs."""
import json

import numpy as np
import pytest
import torch

from apps.cli import main
from pointgcn.errors import FormatError, InputError
from pointgcn.nas.genotype import Genotype, decode, encode_ops
from pointgcn.nas.latency import GRAPH_FREE, collect, sample_edge_ops
from pointgcn.nas.latency_file import read_rows
from pointgcn.nas.latreg import fit, load_latreg, save_latreg
from pointgcn.nas.ops import PRIMITIVES

pytestmark = pytest.mark.usefixtures("one_thread")


TINY = dict(points=16, width=2, cells=1, k=2, n_classes=3)
ARCHS = [["none"] * 9, ["gin"] * 3 + ["skip_connect"] * 6,
         ["edge_conv", "gat", "conv_1x1", "none", "sage", "rel_sage", "mr_conv", "semi_gcn", "gin"]]
COST = np.array([0.0, 0.2, 0.6, 3.0, 2.5, 3.5, 2.0, 2.2, 3.2, 3.3])


def synthetic_rows(n, seed=0, sizes=None):
    """Latency = 4 ms + Σ_edges cost(op)·w(edge) (+ 2.5 ms per extra cell when sizes vary)."""
    rng = np.random.default_rng(seed)
    w = np.linspace(0.8, 1.2, 9)
    rows = []
    for i in range(n):
        sampling = "uniform" if i % 2 else "stratified"
        ops = sample_edge_ops(rng, sampling)
        enc = encode_ops(ops).reshape(9, 10)
        cells = 1 if sizes is None else int(rng.choice(sizes))
        lat = 4.0 + float((enc * COST * w[:, None]).sum()) + 2.5 * (cells - 1)
        rows.append({"encoding": encode_ops(ops).astype(int).tolist(), "ops": ops,
                     "config": {"points": 64, "width": 8, "cells": cells, "k": 4,
                                "task": "classification"},
                     "runtime": "torch", "latency_ms": lat, "device": {"id": "synthetic"},
                     "sampling": sampling})
    return rows


def test_regressor_fits_a_known_additive_latency():
    rows = synthetic_rows(400)
    model, report = fit(rows, holdout=0.25, steps=1500, hidden=64)
    # held out by architecture: no repeated (e.g. all graph-free) cell is tested on its twin
    assert report["holdout"]["mape"] < 2.5, report["holdout"]
    assert report["baseline_holdout_mape"] > 10 * report["holdout"]["mape"]
    g = Genotype([[("gat", 0), ("gin", 1)], [("skip_connect", 0), ("conv_1x1", 2)],
                  [("sage", 1), ("mr_conv", 3)]])
    enc = g.encoding().reshape(9, 10)
    truth = 4.0 + float((enc * COST * np.linspace(0.8, 1.2, 9)[:, None]).sum())
    with torch.no_grad():
        assert abs(float(model(torch.as_tensor(g.encoding()))) - truth) / truth < 0.05


def test_regressor_takes_varying_cells_as_input(tmp_path):
    rows = synthetic_rows(400, seed=1, sizes=[1, 2, 3])
    model, report = fit(rows, steps=1500, hidden=64)
    # the cell count moves latency by ±2.5 ms of ≈ 20: ≈ 8 % MAPE if the input were ignored
    assert model.extra_keys == ("cells",) and report["holdout"]["mape"] < 2.0
    save_latreg(model, tmp_path / "r.pt")
    again = load_latreg(tmp_path / "r.pt")
    x = torch.as_tensor(np.array(rows[0]["encoding"], np.float32))
    ex = again.extras_for({"cells": 2})
    with torch.no_grad():
        assert torch.allclose(again(x, ex), model(x, ex))
    assert again.meta["config"]["points"] == 64 and again.meta["varying"] == {"cells": [1, 2, 3]}


def test_collect_appends_rows_that_grow_across_calls(tmp_path):
    out = tmp_path / "lat.jsonl"
    assert collect(out, 3, TINY, archs=ARCHS, warmup=0, rounds=2, progress=False, seed=0) == 3
    assert collect(out, 3, {**TINY, "points": 24}, archs=ARCHS[:2], warmup=0, rounds=2,
                   progress=False, seed=1, group=1) == 2
    lines = out.read_text().splitlines()
    assert len(lines) == 5 and all(line.startswith("{") for line in lines)
    rows = read_rows(out)
    for row, ops in zip(rows, ARCHS + ARCHS[:2]):
        assert decode(row["encoding"]) == ops == row["ops"]
        assert sum(row["encoding"]) == 9 and len(row["encoding"]) == 90
        assert row["latency_ms"] > 0 and row["reference_ms"] > 0
        assert row["config"]["width"] == 2
        assert row["threads"] == 1 and row["stats"]["clock"] == "cpu"
        assert {"cpu", "cores", "torch", "id"} <= set(row["device"])
        assert row["timestamp"].endswith("+00:00")
    assert [r["config"]["points"] for r in rows] == [16] * 3 + [24] * 2
    onnx = tmp_path / "onnx.jsonl"
    assert collect(onnx, 1, TINY, archs=ARCHS[:1], warmup=0, rounds=2, progress=False,
                   seed=1, runtime="onnxruntime") == 1
    assert read_rows(onnx)[0]["runtime"] == "onnxruntime"


def test_collect_cuts_an_unfinished_last_line_before_appending(tmp_path, caplog):
    out = tmp_path / "lat.jsonl"
    collect(out, 1, TINY, archs=ARCHS[:1], warmup=0, rounds=1, progress=False, seed=0)
    full = out.read_text()
    out.write_text(full + full[:40])  # an append cut short
    collect(out, 1, TINY, archs=ARCHS[1:2], warmup=0, rounds=1, progress=False, seed=0)
    assert [r.levelname for r in caplog.records if "unfinished last line" in r.message] == \
        ["WARNING"]  # a note (the CLI prints it as `note: …` on stderr), not a print
    lines = out.read_text().splitlines()
    assert lines[0] == full.strip() and len(lines) == 2
    assert [r["ops"] for r in read_rows(out)] == ARCHS[:2]


@pytest.mark.parametrize("change, msg", [
    (dict(config={**TINY, "fusion_channels": 8}), "fusion_channels"),
    (dict(config={**TINY, "prediction": [4]}), "prediction"),
    (dict(config=TINY, threads=2), "device id"),
    (dict(config=TINY, runtime="onnxruntime"), "runtime"),
])
def test_collect_refuses_rows_fit_could_not_combine(tmp_path, change, msg):
    out = tmp_path / "lat.jsonl"
    collect(out, 1, TINY, archs=ARCHS[:1], warmup=0, rounds=1, progress=False, seed=0)
    before = out.read_bytes()
    kw = dict(warmup=0, rounds=1, progress=False, seed=0, archs=ARCHS[1:2])
    with pytest.raises(InputError, match=msg):
        collect(out, 1, change.pop("config"), **change, **kw)
    assert out.read_bytes() == before


def test_sampling_schemes():
    rng = np.random.default_rng(0)
    uni = [sample_edge_ops(rng) for _ in range(2000)]
    counts = np.bincount([PRIMITIVES.index(op) for ops in uni for op in ops], minlength=10)
    assert counts.min() > 0.8 * 1800 and counts.max() < 1.2 * 1800  # 18000 edges / 10 ops
    strat = [sample_edge_ops(rng, "stratified") for _ in range(2000)]
    n_graph = np.bincount([sum(op not in GRAPH_FREE for op in ops) for ops in strat],
                          minlength=10)
    assert n_graph.min() > 120  # ≈ 200 cells for each of 0…9 graph ops
    assert sum(all(op in GRAPH_FREE for op in ops) for ops in uni) < 5


def test_read_rows_skips_an_unfinished_append_and_rejects_bad_lines(tmp_path):
    good = json.dumps(synthetic_rows(1)[0])
    path = tmp_path / "l.jsonl"
    path.write_text(good + "\n" + good[:40])  # the last append never finished
    assert len(read_rows(path)) == 1
    path.write_text(good + "\n{oops\n" + good + "\n")
    with pytest.raises(FormatError, match="l.jsonl:2"):
        read_rows(path)
    bad = dict(synthetic_rows(1)[0], latency_ms=-1)
    path.write_text(json.dumps(bad) + "\n")
    with pytest.raises(FormatError, match="positive"):
        read_rows(path)
    with pytest.raises(InputError, match="not found"):
        read_rows(tmp_path / "missing.jsonl")
    mixed = synthetic_rows(4)
    mixed[0]["runtime"] = "onnxruntime"
    with pytest.raises(InputError, match="mix runtimes"):
        fit(mixed)


def test_fit_cli_writes_model_metrics_and_plot(tmp_path, capsys):
    data = tmp_path / "lat.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in synthetic_rows(200, seed=3)))
    out = tmp_path / "latreg.pt"
    assert main(["latency", "fit", str(data), "--out", str(out), "--png",
                 str(tmp_path / "fit.png"), "--steps", "800", "--hidden", "64"]) == 0
    printed = capsys.readouterr().out
    assert "MAPE" in printed and "MAE" in printed
    metrics = json.loads((tmp_path / "latreg.json").read_text())
    assert metrics["n_rows"] == 200 and metrics["n_holdout"] == 40
    assert metrics["holdout"]["mape"] < 5
    assert len(metrics["holdout_points"]["measured_ms"]) == 40
    assert set(metrics["holdout_by_sampling"]) == {"stratified", "uniform"}
    assert (tmp_path / "fit.png").read_bytes()[:4] == b"\x89PNG"
    assert load_latreg(out).meta["runtime"] == "torch"
    g = tmp_path / "g.yaml"
    from pointgcn.nas.genotype import save_genotype
    save_genotype(Genotype([[("gat", 0), ("gin", 1)], [("skip_connect", 0), ("conv_1x1", 2)],
                            [("sage", 1), ("mr_conv", 3)]], cells=1, channels=8, k=4), g)
    assert main(["latency", "predict", str(out), str(g)]) == 0
    assert "predicted" in capsys.readouterr().out
    # sizes the regressor holds fixed (points 64, width 8, cells 1, k 4) must not be overridden
    assert main(["latency", "predict", str(out), str(g), "--points", "128"]) == 2
    assert "--points is 128" in capsys.readouterr().err
    assert main(["latency", "predict", str(out), str(g), "--points", "64", "--k", "4"]) == 0
    capsys.readouterr()
    save_genotype(Genotype([[("gat", 0), ("gin", 1)], [("skip_connect", 0), ("conv_1x1", 2)],
                            [("sage", 1), ("mr_conv", 3)]], cells=1, channels=16, k=4), g)
    assert main(["latency", "predict", str(out), str(g)]) == 2
    assert "genotype's channels is 16" in capsys.readouterr().err
    assert main(["latency", "predict", str(out), str(g), "--width", "8"]) == 0


@pytest.mark.parametrize("argv,msg", [
    (["latency", "fit", "MISSING.jsonl", "--out", "x.pt"], "not found"),
    (["latency", "collect", "--out", "OUT.jsonl", "--n", "0"], "≥ 1"),
    (["latency", "collect", "--out", "OUT.jsonl", "--points", "8", "--k", "9"], "too few"),
])
def test_latency_cli_bad_input(tmp_path, capsys, argv, msg):
    argv = [a.replace("MISSING", str(tmp_path / "missing")).replace("OUT", str(tmp_path / "o"))
            for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and msg in err[0]
    assert not (tmp_path / "o.jsonl").exists() and not (tmp_path / "x.pt").exists()


def test_device_fingerprint_builds_on_the_export_one(monkeypatch):
    """One CPU probe for the package (export.timing); rows add machine/OS and an id that
    separates runtimes and thread counts; a torch row does not depend on onnxruntime."""
    import pointgcn.export.timing as timing
    from pointgcn.nas import latency

    monkeypatch.setattr(timing, "cpu_model", lambda: "Test CPU 9000")
    torch_fp = latency.device_fingerprint("torch", 1)
    ort_fp = latency.device_fingerprint("onnxruntime", 1)
    assert torch_fp["cpu"] == ort_fp["cpu"] == "Test CPU 9000"
    base = timing.device_fingerprint()
    assert {k: v for k, v in ort_fp.items() if k not in ("machine", "system", "id")} == base
    assert "onnxruntime" not in torch_fp and ort_fp["onnxruntime"] == base["onnxruntime"]
    ids = {latency.device_fingerprint(r, t)["id"] for r in ("torch", "onnxruntime")
           for t in (1, 2)}
    assert len(ids) == 4 and latency.device_fingerprint("torch", 1)["id"] == torch_fp["id"]
    monkeypatch.setattr(timing, "cpu_model", lambda: "Other CPU")
    assert latency.device_fingerprint("torch", 1)["id"] != torch_fp["id"]
    other_cpu = latency.device_fingerprint("torch", 1)["id"]
    monkeypatch.setattr(timing, "code_fingerprint", lambda: "changed-code")
    assert latency.device_fingerprint("torch", 1)["id"] != other_cpu  # pointgcn's code counts


def test_code_fingerprint_follows_the_sources(tmp_path):
    import pointgcn.export.timing as timing

    assert timing.device_fingerprint()["pointgcn"] == timing.code_fingerprint()
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "sub" / "b.py").write_text("y = 2\n")
    (tmp_path / "notes.txt").write_text("ignored")
    first = timing.sources_hash(tmp_path)
    assert timing.sources_hash(tmp_path) == first
    (tmp_path / "notes.txt").write_text("still ignored")
    assert timing.sources_hash(tmp_path) == first
    (tmp_path / "sub" / "b.py").write_text("y = 3\n")
    assert timing.sources_hash(tmp_path) != first


def test_onnx_runner_uses_the_export_session_and_fails_in_one_line(tmp_path, monkeypatch):
    from pointgcn.nas import latency

    net = latency.build_network(ARCHS[2], TINY)
    x = torch.rand(1, 3, 16)
    run = latency._onnx_runner(net, x, 1, tmp_path)
    with torch.no_grad():
        np.testing.assert_allclose(run()[0], net(x).numpy(), atol=1e-4)

    def broken(model, x, path):
        path.write_bytes(b"not an onnx model")
        return path
    monkeypatch.setattr(latency, "export_onnx_file", broken)
    with pytest.raises(FormatError, match="onnxruntime cannot load it") as e:
        latency._onnx_runner(net, x, 1, tmp_path)
    assert "\n" not in str(e.value)


def test_pipeline_hashes_with_the_weights_helper():
    from pointgcn.models import weights
    from pointgcn.nas import pipeline

    assert pipeline.sha256 is weights.sha256  # one implementation, as candidates.json needs


def test_fit_splits_by_architecture_and_takes_the_reference_from_training_rows():
    base = synthetic_rows(30, seed=3, sizes=[1, 2])
    rows = [dict(r, reference_ms=10.0 + i) for i, r in enumerate(base * 4)]  # each arch 4×
    model, report = fit(rows, holdout=0.25, steps=5, min_architectures=1)
    hold = set(model.holdout["rows"])
    train = [i for i in range(len(rows)) if i not in hold]

    def key(i):
        return (tuple(rows[i]["encoding"]), rows[i]["config"]["cells"])
    assert hold and train and not {key(i) for i in hold} & {key(i) for i in train}
    assert report["n_holdout"] == len(hold)
    assert model.meta["reference_ms"] == np.median([rows[i]["reference_ms"] for i in train])


def _bad_encoding(kind):
    enc = encode_ops(ARCHS[2]).astype(int).tolist()
    if kind == "string":
        return "1" * 90
    if kind == "string items":
        return [str(v) for v in enc]
    if kind == "two ops":
        return [1] + enc[1:]  # edge 0 also keeps op 0
    if kind == "no op":
        return [0] * 10 + enc[10:]
    return [True if v else False for v in enc]


@pytest.mark.parametrize("change, msg", [
    (dict(encoding=_bad_encoding("string")), "encoding must be a list"),
    (dict(encoding=_bad_encoding("string items")), "encoding must be a list"),
    (dict(encoding=_bad_encoding("bools")), "encoding must be a list"),
    (dict(encoding=_bad_encoding("two ops")), r"one 1 per edge \(edges \[0\]"),
    (dict(encoding=_bad_encoding("no op")), r"one 1 per edge \(edges \[0\]"),
    (dict(latency_ms=True), "latency_ms must be a positive number"),
    (dict(config={"points": 64, "width": "8", "cells": 1, "k": 4}), "config width"),
    (dict(config={"points": 64.5, "width": 8, "cells": 1, "k": 4}), "config points"),
])
def test_bad_rows_are_one_line_format_errors_naming_the_line(tmp_path, capsys, change, msg):
    rows = synthetic_rows(6, seed=4)
    rows[3].update(change)
    path = tmp_path / "l.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(FormatError, match=msg) as e:
        read_rows(path)
    assert str(e.value).startswith(f"{path}:4:")
    assert main(["latency", "fit", str(path), "--out", str(tmp_path / "r.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and not (tmp_path / "r.pt").exists()
