"""ONNX export: every block and conv kind, parity gates, quantisation, clear errors."""
import json

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from pointgcn.errors import ExportError, InputError
from pointgcn.export import OnnxPredictor, export_onnx, read_metadata
from pointgcn.export.parity import (GivenGraphs, check_inputs, parity_sizes, random_clouds,
                                    record_graphs)
from pointgcn.export.timing import time_interleaved
from pointgcn.export.tracing import unsupported_op
from pointgcn.models import build_model
from pointgcn.nas.network import NASNetwork

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(n_blocks=3, channels=8, k=4, fusion_channels=16, prediction=[16, 8], dropout=0.0,
            in_channels=6, n_classes=5, growth=4)

# Every block and every conv (and every GEN aggregator) at least once, all task kinds. The
# first four run the full parity check; the rest are exported and compared at three N directly.
MATRIX = [
    ("res", "edge", {}, "segmentation"),
    ("rev", "edge", {}, "classification"),
    ("dense", "gat", {"heads": 2}, "part_segmentation"),
    ("res+", "gen", {"aggr": "softmax"}, "segmentation"),
    ("plain", "mr", {}, "classification"),
    ("dense", "gin", {}, "segmentation"),
    ("rev", "gen", {"aggr": "power"}, "segmentation"),
    ("res", "sage", {}, "segmentation"),
    ("plain", "rsage", {}, "classification"),
    ("res+", "semi_gcn", {}, "classification"),
    ("res", "conv1x1", {}, "segmentation"),
    ("plain", "gen", {"aggr": "softmax_sg", "msg_norm": True}, "segmentation"),
    ("dense", "gen", {"aggr": "max"}, "classification"),
    ("res", "gen", {"aggr": "mean", "mlp_layers": 2}, "segmentation"),
    ("rev", "gen", {"aggr": "sum"}, "segmentation"),
]
FULL = MATRIX[:4]


def _ids(rows):
    return [f"{b}-{c}-{o.get('aggr', '')}-{t[:3]}" for b, c, o, t in rows]


def _randomise_norms(model: nn.Module) -> nn.Module:
    """Trained-looking BatchNorm stats, some scales negative (EdgeConv's max becomes a min)."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(c, generator=g))
    return model.eval()


def _tiny(block, conv, opts, task):
    return _randomise_norms(build_model({**TINY, "block": block, "conv": conv, "task": task,
                                         **opts}))


def _expected_shape(task, batch, n):
    return (batch, 5) if task == "classification" else (batch, 5, n)


@pytest.mark.parametrize("block,conv,opts,task", FULL, ids=_ids(FULL))
def test_export_check_and_parity_at_three_point_counts(tmp_path, block, conv, opts, task):
    model = _tiny(block, conv, opts, task)
    out = tmp_path / "m.onnx"
    report = export_onnx(model, out, points=32, batch=2, threads=1)
    onnx.checker.check_model(str(out), full_check=True)
    assert report.passed and out.is_file()
    dims = report.inputs["features"]
    assert isinstance(dims[0], str) and dims[1] == 6 and isinstance(dims[2], str)
    static = report.parity["static_graph"]
    graphs = 1 + 2 * (2 if block == "rev" else 1)  # head + one per block (rev: one per group)
    assert static["graphs"] == graphs and static["max_rel"] < 1e-5
    sizes = [r["points"] for r in report.parity["labels"]]
    assert len(set(sizes)) == 3 and min(sizes) >= report.min_points
    assert all(r["agreement"] >= 0.99 for r in report.parity["labels"])
    layers = report.parity["graphs"]  # per-layer neighbours, onnxruntime vs PyTorch
    assert [g["layer"] for g in layers] == list(range(graphs))
    assert layers[0]["sets"] == layers[0]["positions"] == 1.0  # the same xyz: the same graph
    assert all(0.9 <= g["positions"] <= g["sets"] <= 1.0 for g in layers)  # near-tie flips
    if block != "rev":
        assert [(g["k"], g["dilation"]) for g in layers] == [(4, 1), (4, 1), (4, 2)]
    saved = json.loads(out.with_suffix(".parity.json").read_text())
    assert saved["passed"] and saved["parity"]["labels"] == report.parity["labels"]
    # the file works on its own at yet another N and batch, matching PyTorch
    pred = OnnxPredictor(out, threads=1)
    assert (pred.task, pred.in_channels, pred.n_classes) == (task, 6, 5)
    x = random_clouds(3, 6, 48, seed=7)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    got = pred(x)
    assert got.shape == ref.shape == _expected_shape(task, 3, 48)
    assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.99


@pytest.mark.parametrize("block,conv,opts,task", MATRIX[4:], ids=_ids(MATRIX[4:]))
def test_every_block_and_conv_exports_with_dynamic_n(tmp_path, block, conv, opts, task):
    model = _tiny(block, conv, opts, task)
    out = tmp_path / "m.onnx"
    export_onnx(model, out, points=32, parity=False)
    pred = OnnxPredictor(out, threads=1)
    for i, (b, n) in enumerate([(1, 16), (2, 40), (3, 96)]):
        x = random_clouds(b, 6, n, seed=i)
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        got = pred(x)
        assert got.shape == ref.shape == _expected_shape(task, b, n)
        assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.99


def test_given_graphs_reproduce_the_model_and_really_use_the_graphs():
    model = _randomise_norms(build_model({**TINY, "conv": "edge", "block": "res"}))
    x = torch.from_numpy(random_clouds(2, 6, 40))
    ref, graphs = record_graphs(model, x)
    assert len(graphs) == 3 and graphs[0].shape == (2, 40, 4)
    wrapped = GivenGraphs(model)
    with torch.no_grad():
        assert torch.equal(wrapped(x, *graphs), ref)
        shuffled = [g.flip(1) for g in graphs]  # other neighbours → other output
        assert not torch.allclose(wrapped(x, *shuffled), ref)


def test_metadata_and_predictor_contract(tmp_path):
    model = build_model({**TINY, "task": "segmentation"})
    out = tmp_path / "seg.onnx"
    export_onnx(model, out, points=32, parity=False, run_config={"data": {"n_points": 32}},
                class_names=list("abcde"))
    meta = read_metadata(out)
    assert meta["task"] == "segmentation" and meta["in_channels"] == 6
    assert meta["config"]["model"]["k"] == 4 and meta["config"]["data"]["n_points"] == 32
    assert meta["min_points"] == 8  # k=4 × dilation 2 of the last block
    pred = OnnxPredictor(out, threads=1)
    assert pred.class_names == list("abcde") and pred.config["data"]["n_points"] == 32
    with pytest.raises(InputError, match="expects features"):
        pred(np.zeros((1, 3, 32), np.float32))
    with pytest.raises(InputError, match="at least 8 points"):
        pred(np.zeros((1, 6, 7), np.float32))
    # a file without our metadata still works from its shapes
    proto = onnx.load(str(out))
    del proto.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, str(bare))
    plain = OnnxPredictor(bare)
    assert (plain.in_channels, plain.n_classes, plain.task) == (6, 5, "segmentation")
    x = random_clouds(1, 6, 20)
    assert np.array_equal(plain(x), pred(x))


def test_predictor_bad_files(tmp_path):
    with pytest.raises(InputError, match="not found"):
        OnnxPredictor(tmp_path / "missing.onnx")
    with pytest.raises(InputError, match="expected an .onnx"):
        OnnxPredictor(tmp_path / "model.pt")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(InputError, match="cannot load"):
        OnnxPredictor(junk)
    model = build_model(TINY)
    export_onnx(model, tmp_path / "ok.onnx", points=16, parity=False)
    with pytest.raises(InputError, match="not available"):
        OnnxPredictor(tmp_path / "ok.onnx", providers=["NoSuchExecutionProvider"])


class _ExportDiffers(nn.Module):
    """Adds an offset only while exported: parity must catch it."""

    cfg = {"in_channels": 3, "n_classes": 4, "task": "segmentation", "name": "differs"}

    def __init__(self):
        super().__init__()
        self.lin = nn.Conv1d(3, 4, 1)

    def forward(self, x):
        y = self.lin(x)
        return y + 5.0 * x[:, :1] if torch.onnx.is_in_onnx_export() else y


def test_failed_parity_raises_and_writes_no_model(tmp_path):
    out = tmp_path / "bad.onnx"
    with pytest.raises(ExportError, match="parity check failed") as err:
        export_onnx(_ExportDiffers(), out, points=16)
    assert "\n" not in str(err.value)
    assert not out.exists() and not list(tmp_path.glob(".*tmp*"))
    saved = json.loads((tmp_path / "bad.parity.json").read_text())
    assert not saved["passed"] and saved["parity"]["static_graph"]["max_rel"] > 1e-2
    report = export_onnx(_ExportDiffers(), out, points=16, enforce=False)
    assert not report.passed and out.is_file()


class _Unexportable(nn.Module):
    cfg = {"in_channels": 3, "n_classes": 3, "task": "segmentation"}

    def forward(self, x):
        return torch.special.bessel_j0(x)


def test_unexportable_op_names_the_op(tmp_path, capfd):
    with pytest.raises(ExportError) as err:
        export_onnx(_Unexportable(), tmp_path / "u.onnx", points=8)
    msg = str(err.value)
    assert "aten::special_bessel_j0" in msg and "\n" not in msg
    assert not (tmp_path / "u.onnx").exists()
    out, errs = capfd.readouterr()  # the exporter's own graph dump is not shown
    assert "Torch IR graph" not in out + errs


def test_dynamo_exporter_alternative(tmp_path):
    model = _tiny("res", "edge", {}, "segmentation")
    out = tmp_path / "d.onnx"
    report = export_onnx(model, out, points=32, parity=False, exporter="dynamo", opset=18)
    assert report.exporter == "dynamo" and report.opset == 18
    pred = OnnxPredictor(out, threads=1)
    for n in (16, 72):
        x = random_clouds(2, 6, n, seed=n)
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        assert np.allclose(pred(x), ref, atol=1e-4)


def test_unsupported_op_parsing():
    assert unsupported_op(RuntimeError("Exporting the operator 'aten::kthvalue' to ONNX opset "
                                       "version 17 is not supported")) == "aten::kthvalue"
    assert unsupported_op(RuntimeError("Couldn't export Python operator MyFn")) == "MyFn"
    assert unsupported_op(RuntimeError("No decomposition for aten.foo.default")) == "aten.foo.default"
    dynamo = ("No ONNX function found for <OpOverload(op='prims.bessel_j0', "
              "overload='default')>. Failure message: …")
    assert unsupported_op(RuntimeError(dynamo)) == "prims.bessel_j0"
    assert unsupported_op(RuntimeError("shape mismatch")) is None


def test_export_rejects_bad_requests(tmp_path):
    model = build_model(TINY)
    with pytest.raises(ExportError, match="must end in .onnx"):
        export_onnx(model, tmp_path / "m.txt")
    with pytest.raises(ExportError, match="opset 13 is too old"):
        export_onnx(model, tmp_path / "m.onnx", opset=13, parity=False)
    with pytest.raises(ExportError, match="no .cfg"):
        export_onnx(nn.Linear(3, 3), tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()
    assert model.training  # the caller's mode is restored


def test_quantized_export(tmp_path):
    model = _randomise_norms(build_model({**TINY, "channels": 16}))
    out = tmp_path / "q.onnx"
    report = export_onnx(model, out, points=64, quantize=True, parity=False)
    q = report.quantized
    qpath = tmp_path / "q.int8.onnx"
    assert q["path"] == str(qpath) and qpath.is_file()
    ops = {n.op_type for n in onnx.load(str(qpath)).graph.node}
    assert "MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops
    assert read_metadata(qpath)["quantized"] == "int8 dynamic"
    # the comparison recomputed here, on the same clouds (three N, batch 2)
    fp32, int8 = OnnxPredictor(out, threads=1), OnnxPredictor(qpath, threads=1)
    clouds = check_inputs(64, fp32.min_points, 6, 2)
    pairs = [(fp32(x), int8(x)) for x in clouds]
    labels = sum(a.argmax(1).size for a, _ in pairs)
    agree = sum(int((a.argmax(1) == b.argmax(1)).sum()) for a, b in pairs) / labels
    max_abs = max(float(np.abs(a - b).max()) for a, b in pairs)
    assert q["labels"] == labels == 2 * (32 + 64 + 128)
    assert q["agreement"] == agree >= 0.95
    assert q["max_abs"] == pytest.approx(max_abs) and max_abs > 0  # int8 really is another model
    # latency: a ratio of the two medians, each near one measured here (not ms vs s, not 0)
    assert q["speedup"] == pytest.approx(q["fp32_p50_ms"] / q["int8_p50_ms"])
    x = random_clouds(2, 6, q["points"])
    times = time_interleaved({"fp32": lambda: fp32(x), "int8": lambda: int8(x)}, runs=9)
    for name in ("fp32", "int8"):
        here = 1e3 * float(np.median(times[name]))
        assert here / 20 < q[f"{name}_p50_ms"] < here * 20, (name, q[f"{name}_p50_ms"], here)
    assert int8(random_clouds(1, 6, 64)).shape == (1, 5, 64)


def test_parity_sizes_and_user_check_data():
    assert parity_sizes(1024, 8) == [512, 1024, 2048]
    assert parity_sizes(10, 8) == [8, 10, 20]
    assert parity_sizes(4, 8) == [8, 12, 16]
    data = random_clouds(2, 6, 100, seed=3)
    xs = check_inputs(64, 8, 6, 2, check_data=data)
    assert [x.shape[2] for x in xs] == [32, 64, 100]
    # subsets of the given clouds, not new points
    pts = {tuple(p) for p in data[0].T}
    assert all(tuple(p) in pts for p in xs[0][0].T)
    with pytest.raises(InputError, match="needs ≥ 8"):
        check_inputs(64, 8, 6, 2, check_data=data[:, :, :5])


def test_searched_cell_network_exports_unchanged(tmp_path):
    genotype = {"nodes": [[["edge_conv", 0], ["mr_conv", 1]], [["skip_connect", 1], ["gat", 2]],
                          [["conv_1x1", 0], ["gin", 3]]], "cells": 2, "channels": 8, "k": 4}
    model = _randomise_norms(build_model({
        "name": "nas", "genotype": genotype, "task": "segmentation", "in_channels": 6,
        "n_classes": 5, "fusion_channels": 16, "prediction": [16, 8], "dropout": 0.0}))
    assert isinstance(model, NASNetwork)
    report = export_onnx(model, tmp_path / "nas.onnx", points=32, threads=1)
    assert report.passed and report.parity["static_graph"]["graphs"] == 2  # one per cell
    assert report.parity["static_graph"]["max_rel"] < 1e-5
    assert report.min_points == 8 and read_metadata(tmp_path / "nas.onnx")["name"] == "nas"


def test_default_check_clouds_are_of_the_models_kind():
    """Room blocks (9 channels, no resampled duplicates), shapes on the unit sphere (3 or 6
    channels), part shapes; deterministic; anything else falls back to noise (None)."""
    from pointgcn.data.synthetic.check_clouds import synthetic_clouds

    rooms = {"model": {"task": "segmentation", "in_channels": 9},
             "data": {"block": 1.0, "stride": 0.5, "position_norm": "normalize_scale"}}
    x, name = synthetic_clouds(rooms, 2, 256, seed=1)
    assert name == "synthetic room blocks" and x.shape == (2, 9, 512) and x.dtype == np.float32
    for block in x:
        assert len(np.unique(block[:3].T, axis=0)) == 512            # every point distinct
        assert np.all((block[3:6] >= 0) & (block[3:6] <= 1))          # colours
        assert np.abs(block[:3]).max() <= 1.0 + 1e-6                  # normalize_scale
    assert np.array_equal(x, synthetic_clouds(rooms, 2, 256, seed=1)[0])
    shapes, name = synthetic_clouds({"model": {"task": "classification", "in_channels": 6}},
                                    3, 64)
    assert name == "synthetic shapes" and shapes.shape == (3, 6, 128)
    radius = np.linalg.norm(shapes[:, :3], axis=1)
    assert np.allclose(radius.max(1), 1.0, atol=1e-5)                 # unit sphere
    assert np.allclose(np.linalg.norm(shapes[:, 3:], axis=1), 1.0, atol=1e-4)  # normals
    parts, name = synthetic_clouds({"model": {"task": "part_segmentation", "in_channels": 3},
                                    "data": {"category": "Table"}}, 2, 100)
    assert name == "synthetic part shapes" and parts.shape == (2, 3, 200)
    assert synthetic_clouds({"model": {"task": "segmentation", "in_channels": 4}}, 2, 64) is None


def test_neighbour_agreement_counts_positions_and_shared_neighbours():
    from pointgcn.export.parity import neighbour_agreement
    a = torch.tensor([[[0, 1, 2, 3], [1, 0, 2, 3]]])
    b = torch.tensor([[[0, 2, 1, 3], [1, 5, 6, 7]]])  # row 0: same set, 2 of 4 in place
    got = neighbour_agreement(a, b)
    assert got["positions"] == 3 / 8       # (0,0), (0,3), (1,0)
    assert got["sets"] == (4 / 4 + 1 / 4) / 2
