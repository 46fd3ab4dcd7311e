"""`export_onnx(custom_knn=True)` / `pointgcn export --custom-knn`: each kNN as one
onnxruntime-extensions node running the eager kNN. Tests that run the operator skip cleanly
where onnxruntime-extensions is not installed; the missing-package errors are tested always."""
import json
import sys

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from apps.cli import main
from pointgcn.errors import InputError
from pointgcn.export import OnnxPredictor, export_onnx, read_metadata
from pointgcn.export.benchmark import CUSTOM, EAGER, ORT, bench_source
from pointgcn.export.custom_knn import DOMAIN, OP_TYPE, custom_knn_ops
from pointgcn.export.runtime import make_session
from pointgcn.export.serve import LoadedModel
from pointgcn.export.tracing import trace_to_onnx
from pointgcn.graph import DilatedKnn, knn_modules
from pointgcn.models import build_model, save_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")
try:
    import onnxruntime_extensions  # noqa: F401
    HAVE_ORTX = True
except ImportError:
    HAVE_ORTX = False
needs_ortx = pytest.mark.skipif(not HAVE_ORTX, reason="onnxruntime-extensions not installed")

# A tiny ResGCN with DeepGCN's dilation (block i: dilation 1 + i, so k·d up to 4·6 = 24).
TINY = dict(n_blocks=6, channels=8, k=4, fusion_channels=16, prediction=[16, 8], dropout=0.0,
            in_channels=6, n_classes=5, block="res", conv="edge", task="segmentation",
            use_dilation=True)


def _tiny():
    torch.manual_seed(0)
    model = build_model(TINY).eval()
    g = torch.Generator().manual_seed(1)
    for m in model.modules():  # trained-looking BatchNorm statistics
        if isinstance(m, nn.BatchNorm1d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(m.num_features, generator=g))
    return model


class OneGraph(nn.Module):
    def __init__(self, k, dilation):
        super().__init__()
        self.graph = DilatedKnn(k, dilation)

    def forward(self, x):
        return self.graph(x)


def _one_graph_file(tmp_path, k, dilation, custom=True):
    model = OneGraph(k, dilation).eval()
    path = tmp_path / f"g{k}_{dilation}_{custom}.onnx"
    with custom_knn_ops(model, custom):
        trace_to_onnx(model, (torch.randn(1, 3, 4 * k * dilation),), path,
                      input_names=["features"], output_names=["idx"],
                      dynamic_axes={"features": {0: "b", 2: "n"}, "idx": {0: "b", 1: "n"}})
    return model, path


def _brute_dilated(x: np.ndarray, k: int, dilation: int) -> np.ndarray:
    """float64 distances, self first, ties by index, every d-th of the k·d nearest."""
    out = []
    for cloud in x.astype(np.float64):
        p = cloud.T
        d = ((p[:, None] - p[None]) ** 2).sum(-1)
        np.fill_diagonal(d, -1.0)
        order = np.lexsort((np.broadcast_to(np.arange(len(p)), d.shape), d), axis=-1)
        out.append(order[:, :k * dilation:dilation][:, :k])
    return np.stack(out)


@needs_ortx
@pytest.mark.parametrize("k,dilation", [(4, 1), (3, 5), (16, 27)])
def test_custom_operator_neighbours_equal_eager_and_brute_force(tmp_path, k, dilation):
    model, path = _one_graph_file(tmp_path, k, dilation)
    nodes = onnx.load(str(path)).graph.node
    assert [n.op_type for n in nodes if n.domain == DOMAIN] == [OP_TYPE]
    assert not [n for n in nodes if n.op_type == "TopK"]
    session = make_session(path, threads=1)  # no pointgcn metadata: found by its nodes
    # its pool threads do not spin (they would take the cores of the operator's kNN threads)
    spin = "session.intra_op.allow_spinning"
    assert session.get_session_options().get_session_config_entry(spin) == "0"
    assert make_session(path, spin=True).get_session_options().get_session_config_entry(
        spin) == "1"
    rng = np.random.default_rng(k)
    n = max(3 * k * dilation, 50)
    # integer coordinates: float32 scores are exact (so float64 brute force is the truth)
    # and ties are many (broken by the lower index)
    x = rng.integers(0, 64, (2, 3, n)).astype(np.float32)
    got = session.run(None, {"features": x})[0]
    with torch.no_grad():
        eager = model(torch.from_numpy(x)).numpy()
    assert got.dtype == np.int64 and got.shape == (2, n, k)
    np.testing.assert_array_equal(got, eager)
    np.testing.assert_array_equal(got, _brute_dilated(x, k, dilation))


@needs_ortx
def test_custom_operator_keeps_eager_ties_and_thread_count_does_not_matter(tmp_path):
    """Duplicated points (ties by index) and 1 vs 2 threads: the same graph as eager."""
    from pointgcn.export.custom_knn import dilated_knn, knn_threads

    model, path = _one_graph_file(tmp_path, 4, 3)
    x = np.random.default_rng(0).integers(0, 3, (1, 3, 96)).astype(np.float32)  # many ties
    with torch.no_grad():
        eager = model(torch.from_numpy(x)).numpy()
    for threads in (1, 2):
        with knn_threads(threads):
            np.testing.assert_array_equal(dilated_knn(x, 4, 3), eager)


@needs_ortx
def test_export_with_and_without_custom_knn_same_labels_and_metadata_says_which(tmp_path):
    model = _tiny()
    files = {}
    for custom in (False, True):
        files[custom] = tmp_path / f"m_{custom}.onnx"
        report = export_onnx(model, files[custom], points=64, batch=2, threads=1,
                             custom_knn=custom)
        assert report.passed and report.metadata["knn"] == ("custom" if custom else "standard")
        assert read_metadata(files[custom])["knn"] == ("custom" if custom else "standard")
        # the per-layer neighbour report of the custom file: onnxruntime picks eager's graph
        assert min(g["sets"] for g in report.parity["graphs"]) >= 0.99
    portable, custom = onnx.load(str(files[False])), onnx.load(str(files[True]))
    assert not [n for n in portable.graph.node if n.domain == DOMAIN]
    assert DOMAIN not in {o.domain for o in portable.opset_import}  # any runtime loads it
    assert sum(n.op_type == OP_TYPE for n in custom.graph.node) == len(knn_modules(model)) == 6
    assert not [n for n in custom.graph.node if n.op_type == "TopK"]
    x = np.random.default_rng(3).uniform(-1, 1, (2, 6, 200)).astype(np.float32)
    a, b = OnnxPredictor(files[False], threads=1)(x), OnnxPredictor(files[True], threads=1)(x)
    with torch.no_grad():
        eager = model(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(a.argmax(1), b.argmax(1))
    np.testing.assert_array_equal(b.argmax(1), eager.argmax(1))
    np.testing.assert_allclose(b, eager, atol=1e-4)


def test_missing_extensions_is_one_clean_error(tmp_path, monkeypatch, capsys):
    model = _tiny()
    path = tmp_path / "m.onnx"
    if HAVE_ORTX:  # a real custom-kNN file, then pretend the package is gone
        export_onnx(model, path, points=64, parity=False, custom_knn=True)
    monkeypatch.setitem(sys.modules, "onnxruntime_extensions", None)  # import → ImportError
    if not HAVE_ORTX:  # the metadata alone makes the runtime ask for the package
        export_onnx(model, path, points=64, parity=False)
        proto = onnx.load(str(path))
        next(p for p in proto.metadata_props if p.key == "pointgcn.knn").value = '"custom"'
        onnx.save(proto, str(path))
    with pytest.raises(InputError, match="onnxruntime-extensions"):
        OnnxPredictor(path)
    other = tmp_path / "other.onnx"
    with pytest.raises(InputError, match="custom_knn needs onnxruntime-extensions"):
        export_onnx(model, other, points=64, parity=False, custom_knn=True)
    assert not other.exists() and not list(tmp_path.glob("other*"))
    # the CLI: exit 2, one line, the stage's flag, nothing written
    ckpt = tmp_path / "tiny.pt"
    save_checkpoint(ckpt, model, {"model": dict(model.cfg)})
    out = tmp_path / "cli.onnx"
    assert main(["export", str(ckpt), "--out", str(out), "--custom-knn", "--no-parity"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --custom-knn needs onnxruntime-extensions") and "\n" not in err
    assert not list(tmp_path.glob("cli*"))
    cloud = tmp_path / "c.npy"
    np.save(cloud, np.random.default_rng(0).uniform(-1, 1, (200, 3)).astype(np.float32))
    assert main(["segment", str(cloud), "--onnx", str(path), "--out",
                 str(tmp_path / "seg.ply")]) == 2
    err = capsys.readouterr().err.strip()
    assert "onnxruntime-extensions" in err and "\n" not in err
    assert not (tmp_path / "seg.ply").exists()


@needs_ortx
def test_bench_times_the_custom_variant_beside_eager_and_portable(tmp_path):
    model = _tiny()
    src = LoadedModel("tiny", module=model, run_config={"model": dict(model.cfg)})
    row = bench_source(src, points=64, runs=2, warmup=1, threads=1, memory=False)
    assert list(row["runtimes"]) == [EAGER, ORT, CUSTOM]
    for name in (ORT, CUSTOM):
        s = row["runtimes"][name]
        assert s["speedup_p50"] == pytest.approx(row["runtimes"][EAGER]["p50_ms"] / s["p50_ms"])
        assert s["label_agreement"] >= 0.99
    assert row["speedup_p50"] == row["runtimes"][ORT]["speedup_p50"]
    off = bench_source(src, points=64, runs=1, warmup=0, threads=1, memory=False,
                       custom_knn=False)
    assert list(off["runtimes"]) == [EAGER, ORT]
    json.dumps(row)  # the bench's JSON holds it


@needs_ortx
def test_cli_export_custom_knn_then_segment_with_it(tmp_path, capsys):
    """The user's path: `export --custom-knn` (parity, int8 copy), then `segment --onnx`."""
    cfg = {**TINY, "in_channels": 9, "n_classes": 13}
    torch.manual_seed(0)
    ckpt = tmp_path / "rooms.pt"
    save_checkpoint(ckpt, build_model(cfg), {"model": cfg, "data": {"n_points": 64}})
    out = tmp_path / "rooms.onnx"
    assert main(["export", str(ckpt), "--out", str(out), "--custom-knn", "--quantize",
                 "--threads", "1"]) == 0
    assert "parity        passed" in capsys.readouterr().out
    assert read_metadata(out)["knn"] == "custom"
    int8 = onnx.load(str(tmp_path / "rooms.int8.onnx"))
    assert any(n.op_type == OP_TYPE for n in int8.graph.node)
    cloud = tmp_path / "c.npy"
    np.save(cloud, np.random.default_rng(0).uniform(0, 1, (300, 3)).astype(np.float32))
    seg = tmp_path / "seg.npy"
    assert main(["segment", str(cloud), "--onnx", str(out), "--out", str(seg),
                 "--threads", "1", "--no-harmonise"]) == 0, capsys.readouterr().err
    assert seg.is_file()


@needs_ortx
def test_custom_knn_needs_the_legacy_exporter(tmp_path):
    with pytest.raises(InputError, match="legacy exporter only"):
        export_onnx(_tiny(), tmp_path / "d.onnx", points=64, parity=False, custom_knn=True,
                    exporter="dynamo")
    assert not list(tmp_path.iterdir())


@needs_ortx
def test_the_predictors_thread_count_reaches_the_operator(tmp_path, monkeypatch):
    import pointgcn.export.custom_knn as ck

    seen, real = [], ck._THREADS

    class Recorder:  # the operator reads its thread count here, inside onnxruntime's run
        def get(self):
            seen.append(real.get())
            return seen[-1]

        def set(self, value):
            return real.set(value)

        def reset(self, token):
            real.reset(token)

    monkeypatch.setattr(ck, "_THREADS", Recorder())
    path = tmp_path / "m.onnx"
    model = _tiny()
    export_onnx(model, path, points=64, parity=False, custom_knn=True)
    OnnxPredictor(path, threads=2)(np.random.default_rng(0).random((1, 6, 100), np.float32))
    assert seen == [2] * len(knn_modules(model))
