"""Devices: `--device` on every stage that runs a model, one-line errors for a device the machine
lacks, the DDP backend following the device, kNN / stochastic dilation / inference on a GPU
where one exists (those cases skip elsewhere), and the core importing without open3d/trimesh."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import DEVICES

from apps.cli import build_parser, main
from pointgcn.engine import device as dev
from pointgcn.engine.distributed import Dist, backend_for, init_distributed
from pointgcn.errors import InputError
from pointgcn.graph import dilate, knn

ROOT = Path(__file__).resolve().parents[1]
NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
# Every stage that runs a model, as the parser path to its options (`latency predict
# --measure` times on the device its regressor's rows were measured on, so it takes none).
MODEL_STAGES = [("train",), ("eval",), ("segment",), ("classify",), ("adapt",), ("export",),
                ("bench",), ("search",), ("latency", "collect")]


def _subparser(parser, path):
    for name in path:
        sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
        parser = sub.choices[name]
    return parser


@pytest.mark.parametrize("path", MODEL_STAGES, ids=" ".join)
def test_every_model_stage_has_device(path):
    options = {o for a in _subparser(build_parser(), path)._actions for o in a.option_strings}
    assert "--device" in options


def test_device_names():
    assert dev.device_name("cpu") == "cpu" and dev.device_name(" CPU ") == "cpu"
    assert dev.device_name("auto") == dev.device_name(None) == (
        "cuda" if torch.cuda.is_available() else "cpu")
    assert dev.resolve_device("cpu") == torch.device("cpu")
    for bad in ("gpu", "cuda:x", "cuda1", ""):
        with pytest.raises(InputError, match="must be auto, cpu, cuda or cuda:N"):
            dev.device_name(bad)


@NO_GPU
@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "CUDA:1"])
def test_a_gpu_this_machine_lacks_is_a_one_line_error(spec):
    with pytest.raises(InputError, match="no CUDA GPU is available to torch here") as e:
        dev.device_name(spec)
    assert "\n" not in str(e.value)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_gpu_index_beyond_the_machine_is_a_one_line_error():
    with pytest.raises(InputError, match="GPU"):
        dev.device_name(f"cuda:{torch.cuda.device_count()}")


def _argv(stage, tmp):
    """Arguments each model stage parses (files need not exist: the device check comes first)."""
    cloud, ckpt, cfg = str(tmp / "c.ply"), str(tmp / "m.pt"), str(tmp / "c.yaml")
    return {"train": ["train", cfg, "--out", str(tmp / "run")],
            "eval": ["eval", "--ckpt", ckpt],
            "segment": ["segment", cloud, "--weights", ckpt, "--out", str(tmp / "o.ply")],
            "classify": ["classify", cloud, "--weights", ckpt],
            "adapt": ["adapt", "--labels", cloud, "--out", str(tmp / "a.pt")],
            "export": ["export", ckpt, "--out", str(tmp / "m.onnx")],
            "bench": ["bench", ckpt],
            "search": ["search", cfg, "--out", str(tmp / "s")],
            "latency collect": ["latency", "collect", "--out", str(tmp / "l.jsonl"), "--n", "1"],
            }[stage]


@NO_GPU
@pytest.mark.parametrize("path", MODEL_STAGES, ids=" ".join)
def test_device_cuda_without_a_gpu_exits_2_with_one_line(path, tmp_path, capsys):
    assert main(_argv(" ".join(path), tmp_path) + ["--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --device cuda: no CUDA GPU"), err
    assert list(tmp_path.iterdir()) == []  # nothing written


@pytest.mark.skipif(__import__("pointgcn.export.runtime", fromlist=["x"]).has_cuda_provider(),
                    reason="onnxruntime has its CUDA provider here")
def test_provider_cuda_without_onnxruntime_gpu_says_how_to_get_it(tmp_path, capsys):
    from pointgcn.export.runtime import resolve_provider

    assert resolve_provider(None, "cpu") == "cpu" and resolve_provider("cpu", "auto") == "cpu"
    if not torch.cuda.is_available():
        assert resolve_provider(None, "auto") == "cpu"
    assert main(["segment", str(tmp_path / "c.ply"), "--onnx", str(tmp_path / "m.onnx"),
                 "--provider", "cuda", "--out", str(tmp_path / "o.ply")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'pointgcn[gpu]'" in err[0], err
    assert "onnxruntime-gpu" in err[0] and list(tmp_path.iterdir()) == []


def test_ddp_backend_follows_the_device(monkeypatch):
    assert backend_for(torch.device("cpu")) == "gloo"
    assert backend_for(torch.device("cuda", 1)) == "nccl"
    import torch.distributed as tdist

    seen = {}
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setattr(tdist, "is_initialized", lambda: False)
    monkeypatch.setattr(tdist, "init_process_group", lambda backend: seen.update(b=backend))
    monkeypatch.setattr(tdist, "get_rank", lambda: 1)
    monkeypatch.setattr(tdist, "get_world_size", lambda: 2)
    d = init_distributed("cpu")
    assert seen["b"] == "gloo" and d == Dist(1, 2, torch.device("cpu"))
    if torch.cuda.is_available():
        monkeypatch.setattr(torch.cuda, "set_device", lambda device: seen.update(d=device))
        d = init_distributed("cuda")
        assert seen["b"] == "nccl" and d.device == torch.device("cuda", 0) == seen["d"]
        with pytest.raises(InputError, match="one process per GPU|every process on one GPU"):
            init_distributed("cuda:0")


def test_core_imports_without_open3d_and_trimesh():
    code = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("open3d", "trimesh"):
            raise ImportError("blocked " + name)
sys.meta_path.insert(0, Block())
import pointgcn.models, pointgcn.engine, pointgcn.nas
import pointgcn.engine.trainer, pointgcn.nas.search, pointgcn.nas.pipeline, pointgcn.export
assert not any(m.split(".")[0] in ("open3d", "trimesh") for m in sys.modules)
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "ok", out.stderr[-2000:]


@pytest.mark.parametrize("device", DEVICES)
def test_knn_on_the_device_equals_the_cpu_and_ignores_autocast(device):
    torch.manual_seed(0)
    x = torch.randn(2, 16, 700)
    ref = knn(x, 40)
    on = x.to(device)
    got = knn(on, 40)
    assert got.device.type == device and torch.equal(got.cpu(), ref)
    with torch.autocast(device, dtype=torch.bfloat16):
        assert torch.equal(knn(on, 40).cpu(), ref)  # distances stay float32
    assert torch.equal(knn(on.bfloat16(), 40).cpu(), knn(x.bfloat16().float(), 40))


@pytest.mark.parametrize("device", DEVICES)
def test_stochastic_dilation_draws_on_the_device(device):
    idx = torch.arange(3 * 5 * 12, device=device).view(3, 5, 12)
    cpu_before = torch.get_rng_state()
    torch.manual_seed(1)
    a = dilate(idx, 4, 3, epsilon=1.0, stochastic=True)
    torch.manual_seed(1)
    b = dilate(idx, 4, 3, epsilon=1.0, stochastic=True)
    assert a.device.type == device and torch.equal(a, b)
    assert ((a[..., 1:] > a[..., :-1]).all())  # a subset of the sorted list, kept in order
    if device == "cuda":  # the GPU's generator draws, the CPU's does not move
        torch.set_rng_state(cpu_before)
        dilate(idx, 4, 3, epsilon=1.0, stochastic=True)
        assert torch.equal(torch.get_rng_state(), cpu_before)


@pytest.mark.parametrize("device", DEVICES)
def test_torch_predictor_on_the_device_matches_the_cpu(device):
    from conftest import tiny_model

    from pointgcn.engine.predictor import TorchPredictor
    from pointgcn.models import build_model

    model = build_model({"model": tiny_model(in_channels=9, n_classes=4, dropout=0.0)}).eval()
    x = np.random.default_rng(0).random((3, 9, 64)).astype(np.float32)
    ref = TorchPredictor(model).__call__(x)
    got = TorchPredictor(model, device=device)(x)
    assert got.dtype == np.float32 and got.shape == (3, 4, 64)
    assert (got.argmax(1) == ref.argmax(1)).mean() > 0.99 and np.abs(got - ref).max() < 1e-3


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_reversible_blocks_replay_the_gpu_rng():
    """Stochastic dilation and dropout draw on the GPU; the inverse must redraw the same."""
    from test_reversible import REV, _grads

    from pointgcn.models import build_model

    torch.manual_seed(0)
    model = build_model({**REV, "dropout": 0.3}).double().cuda().train()
    x = torch.randn(2, 3, 48, dtype=torch.float64, device="cuda")
    y = torch.randint(0, 3, (2, 48), device="cuda")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    loss_a, ga = _grads(model, x, y, seed=7)
    model.load_state_dict(state)
    model.backbone.memory_saving = False
    loss_b, gb = _grads(model, x, y, seed=7)
    assert torch.allclose(loss_a, loss_b)
    for a, b in zip(ga, gb):
        assert torch.allclose(a, b, atol=1e-7), (a - b).abs().max()


def test_describe_device_and_rng_states():
    d = dev.describe_device("cpu")
    assert d["type"] == "cpu" and d["name"] and "driver" not in d
    assert dev.same_kind(d, d) and dev.same_kind(None, d)
    assert not dev.same_kind(d, {"type": "cuda", "name": "X"})
    assert not dev.same_kind({"type": "cuda", "name": "A"}, {"type": "cuda", "name": "B"})
    state = dev.rng_state(torch.device("cpu"))
    a = torch.rand(3)
    dev.set_rng_state(state, torch.device("cpu"))
    assert torch.equal(torch.rand(3), a)
    dev.set_rng_state(state["cpu"], torch.device("cpu"))  # a bare tensor: older checkpoints
    assert torch.equal(torch.rand(3), a)
    with pytest.raises(Exception, match="train.amp must be one of none, bf16, fp16"):
        dev.amp_dtype("fp8")
    assert [dev.amp_name(v) for v in (True, False, None, "bf16")] == ["bf16", "none", "none",
                                                                      "bf16"]


def test_budget_on_a_gpu_serves_checkpoints_eagerly_without_onnxruntime_gpu(monkeypatch):
    from pointgcn.export import budget

    monkeypatch.setattr(budget, "has_cuda_provider", lambda: False)
    ckpt, onnx = budget.Candidate("c", Path("c.pt")), budget.Candidate("o", Path("o.onnx"))
    assert budget.serving_runtime(ckpt, "onnx", "cuda") == "torch"
    assert budget.serving_runtime(onnx, "onnx", "cuda") is None
    assert budget.serving_runtime(ckpt, "onnx", "cpu") == "onnx"
    assert budget.serving_runtime(ckpt, "torch", "cuda") == "torch"
    monkeypatch.setattr(budget, "has_cuda_provider", lambda: True)
    assert budget.serving_runtime(ckpt, "onnx", "cuda") == "onnx"
    assert budget.serving_runtime(onnx, "torch", "cuda") == "onnx"


@pytest.mark.parametrize("device", DEVICES)
def test_latency_rows_name_their_device(device, tmp_path):
    from pointgcn.nas.latency import collect, device_of
    from pointgcn.nas.latency_file import read_rows

    tiny = dict(points=32, width=4, cells=1, k=4, fusion_channels=8, prediction=[8])
    assert collect(tmp_path / "l.jsonl", 2, tiny, warmup=1, rounds=2, seed=0, progress=False,
                   device=device) == 2
    rows = read_rows(tmp_path / "l.jsonl")
    fp = rows[0]["device"]
    assert device_of(fp) == device and all(r["latency_ms"] > 0 for r in rows)
    if device == "cuda":
        assert fp["cuda"] == torch.cuda.get_device_name() and rows[0]["stats"]["clock"] == "cuda"
    else:
        assert fp["cuda"] is None


def test_stages_run_on_the_cpu_when_asked(tmp_path, capsys):
    """segment / classify / export / bench with --device cpu (train, search, eval and adapt:
    test_train_device.py, test_adapt.py)."""
    from conftest import tiny_model

    from pointgcn.io import PointCloud, write_ply
    from pointgcn.models import build_model, save_checkpoint

    seg = {"data": {"dataset": "s3dis", "n_points": 64}, "model": tiny_model(in_channels=9,
                                                                             n_classes=13)}
    cls = {"data": {"dataset": "modelnet40", "n_points": 64},
           "model": tiny_model(in_channels=3, n_classes=5, task="classification")}
    save_checkpoint(tmp_path / "seg.pt", build_model(seg).eval(), seg)
    save_checkpoint(tmp_path / "cls.pt", build_model(cls).eval(), cls)
    rng = np.random.default_rng(0)
    write_ply(tmp_path / "c.ply", PointCloud((rng.random((500, 3)) * 2).astype(np.float32),
                                             rng.random((500, 3)).astype(np.float32)))
    preds = []
    for extra in ([], ["--device", "cpu"]):
        out = tmp_path / f"o{len(extra)}.ply"
        assert main(["segment", str(tmp_path / "c.ply"), "--weights", str(tmp_path / "seg.pt"),
                     "--out", str(out), "--no-harmonise", *extra]) == 0
        from pointgcn.io import read_points
        preds.append(read_points(out).fields["pred"])
    assert np.array_equal(*preds)
    assert main(["classify", str(tmp_path / "c.ply"), "--weights", str(tmp_path / "cls.pt"),
                 "--json", "--device", "cpu", "--no-harmonise"]) == 0
    capsys.readouterr()
    assert main(["export", str(tmp_path / "seg.pt"), "--out", str(tmp_path / "s.onnx"),
                 "--points", "64", "--device", "cpu"]) == 0
    parity = json.loads((tmp_path / "s.parity.json").read_text())["parity"]
    assert parity["device"] == "cpu" and parity["provider"] == "CPUExecutionProvider"
    assert main(["bench", str(tmp_path / "cls.pt"), "--points", "64", "--runs", "1",
                 "--warmup", "0", "--no-memory", "--device", "cpu",
                 "--json", str(tmp_path / "b.json")]) == 0
    row = json.loads((tmp_path / "b.json").read_text())["results"][0]
    assert row["device"] == "cpu" and row["provider"] == "CPUExecutionProvider"
    capsys.readouterr()
