"""The one training loop on every available device: it records the device, resumes exactly,
trains in bf16 / fp16 (gradient scaler), refuses another kind of device on resume, and the
architecture search runs on it too (CUDA cases skip without a GPU)."""
import json

import pytest
import torch
import yaml
from conftest import DEVICES, shapes_config

from pointgcn.data.build import build_datasets
from pointgcn.engine.distributed import Dist
from pointgcn.engine.trainer import Trainer
from pointgcn.errors import ConfigError
from pointgcn.models import read_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


def _trainer(cfg, run_dir, device="cpu", **kw):
    data = build_datasets(cfg)
    cfg["model"].update(in_channels=data.in_channels, n_classes=len(data.class_names),
                        task=data.task)
    return Trainer(cfg, run_dir, data, progress=False, dist=Dist(device=torch.device(device)),
                   **kw)


def _weights(run_dir):
    return read_checkpoint(run_dir / "checkpoints" / "last.pt")["state_dict"]


@pytest.mark.parametrize("device", DEVICES)
def test_training_on_a_device_records_it_and_resumes_exactly(synth_root, tmp_path, device,
                                                               monkeypatch):
    cfg = shapes_config(synth_root, epochs=2, batch_size=4, ckpt_every_steps=4, lr=0.01)
    final = _trainer(cfg, tmp_path / "whole", device).fit()
    assert final["device"]["type"] == device
    assert yaml.safe_load((tmp_path / "whole" / "config.yaml").read_text())["device"] == device
    assert read_checkpoint(tmp_path / "whole" / "checkpoints" / "best.pt")["meta"]["device"][
        "type"] == device

    steps, real = [0], Trainer._step

    def dies_at_step_13(self, *a):  # epoch 2, one step after the checkpoint at step 12
        steps[0] += 1
        if steps[0] == 13:
            raise KeyboardInterrupt
        return real(self, *a)
    monkeypatch.setattr(Trainer, "_step", dies_at_step_13)
    with pytest.raises(KeyboardInterrupt):
        _trainer(shapes_config(synth_root, epochs=2, batch_size=4, ckpt_every_steps=4, lr=0.01),
                 tmp_path / "cut", device).fit()
    monkeypatch.undo()
    assert read_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")["train_state"][
        "step"] == 12
    torch.manual_seed(99)  # whatever happened meanwhile
    cfg = shapes_config(synth_root, epochs=2, batch_size=4, ckpt_every_steps=4, lr=0.01)
    data = build_datasets(cfg)
    cfg["model"].update(in_channels=data.in_channels, n_classes=len(data.class_names),
                        task=data.task)
    Trainer(cfg, tmp_path / "cut", data, progress=False, resume=True,
            dist=Dist(device=torch.device(device))).fit()
    a, b = _weights(tmp_path / "whole"), _weights(tmp_path / "cut")
    for k in a:  # the GPU's atomic adds may reorder sums; the CPU is bit-exact
        torch.testing.assert_close(a[k], b[k], **({} if device == "cuda" else
                                                  {"rtol": 0, "atol": 0}))
    if device == "cpu":
        assert (tmp_path / "cut" / "metrics.jsonl").read_text() == \
            (tmp_path / "whole" / "metrics.jsonl").read_text()


def test_bf16_training_on_the_cpu_runs_and_its_loss_falls(synth_root, tmp_path):
    cfg = shapes_config(synth_root, epochs=5, lr=0.01, amp="bf16")
    trainer = _trainer(cfg, tmp_path / "run")
    seen = []
    real = trainer.net.forward
    trainer.net.forward = lambda x: seen.append(
        (trainer.model.training, torch.is_autocast_enabled("cpu"))) or real(x)
    trainer.fit()
    # every training forward ran under bf16 autocast, validation in full precision
    assert {mode for mode in seen} == {(True, True), (False, False)}
    loss = [r["loss"] for r in trainer.state["history"] if r["split"] == "train"]
    assert all(map(torch.isfinite, torch.tensor(loss))) and loss[-1] < 0.9 * loss[0], loss


@pytest.mark.parametrize("device", DEVICES)
def test_fp16_trains_with_a_gradient_scaler_that_resumes(synth_root, tmp_path, device):
    cfg = shapes_config(synth_root, epochs=1, lr=0.01, amp="fp16")
    trainer = _trainer(cfg, tmp_path / "run", device)
    assert trainer.scaler.is_enabled()
    trainer.fit()
    state = read_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["train_state"]
    assert state["scaler"]["scale"] > 0 and state["history"][0]["loss"] > 0
    cfg = shapes_config(synth_root, epochs=2, lr=0.01, amp="fp16")
    data = build_datasets(cfg)
    cfg["model"].update(in_channels=data.in_channels, n_classes=len(data.class_names),
                        task=data.task)
    resumed = Trainer(cfg, tmp_path / "run", data, progress=False, resume=True,
                      dist=Dist(device=torch.device(device)))
    assert resumed.scaler.state_dict() == state["scaler"]
    assert not _trainer(shapes_config(synth_root), tmp_path / "b").scaler.is_enabled()


def test_train_and_eval_on_the_cpu_and_resume_on_another_kind_of_device_is_refused(
        synth_root, tmp_path, capsys):
    from apps.cli import main

    cfg = shapes_config(synth_root, epochs=1)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run"),
                 "--no-progress", "--device", "cpu"]) == 0
    assert main(["eval", "--ckpt", str(tmp_path / "run" / "checkpoints" / "best.pt"),
                 "--device", "cpu", "--no-progress", "--json", str(tmp_path / "e.json")]) == 0
    assert 0 <= json.loads((tmp_path / "e.json").read_text())["shapes"]["oa"] <= 1
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    ckpt = torch.load(last, weights_only=True)
    ckpt["train_state"]["device"] = {"device": "cuda:0", "type": "cuda", "name": "NVIDIA X"}
    torch.save(ckpt, last)
    capsys.readouterr()
    assert main(["train", "--resume", str(tmp_path / "run"), "train.epochs=2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {last}: saved on cuda:0 (NVIDIA X), "
                                               "resuming on cpu"), err
    assert err[0].endswith("resume on the same kind of device (--device cuda)")


def test_sync_bn_is_for_gpus_and_amp_must_be_known(synth_root, tmp_path):
    cfg = shapes_config(synth_root, sync_bn=True)
    data = build_datasets(cfg)
    cfg["model"].update(in_channels=data.in_channels, n_classes=len(data.class_names),
                        task=data.task)
    with pytest.raises(ConfigError, match="train.sync_bn .* on the CPU leave it false"):
        Trainer(cfg, tmp_path / "a", data, progress=False, dist=Dist(0, 2))
    with pytest.raises(ConfigError, match="train.amp must be one of none, bf16, fp16"):
        _trainer(shapes_config(synth_root, amp="half"), tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.parametrize("device", DEVICES)
def test_search_runs_on_the_shared_loop_on_a_device(tmp_path, device):
    from test_nas_sgas import TINY_MODEL, tiny_bundle

    from pointgcn.nas.search import search_supernet

    cfg = {"seed": 0, "model": TINY_MODEL,
           "search": {"warmup_epochs": 0, "decision_freq": 1, "epochs": 2, "batch_size": 4,
                      "max_batches": 2}}
    search = search_supernet(cfg, tmp_path, tiny_bundle(), progress=False,
                             dist=Dist(device=torch.device(device)))
    search.genotype.validate()
    assert search.summary["device"]["type"] == device
    assert json.loads((tmp_path / "search.json").read_text())["device"]["type"] == device
    assert len((tmp_path / "search_log.jsonl").read_text().splitlines()) == 2
    assert (tmp_path / "config.yaml").is_file() and (tmp_path / "metrics.jsonl").is_file()


def test_search_and_latency_collect_on_the_cpu_when_asked(tmp_path, capsys):
    from test_nas_sgas import TINY_MODEL

    from apps.cli import main
    from pointgcn.nas.latency_file import read_rows

    assert main(["latency", "collect", "--out", str(tmp_path / "l.jsonl"), "--n", "1",
                 "--points", "32", "--width", "4", "--cells", "1", "--k", "4", "--fusion", "8",
                 "--prediction", "8", "--rounds", "1", "--warmup", "0", "--seed", "0",
                 "--device", "cpu", "--no-progress"]) == 0
    assert read_rows(tmp_path / "l.jsonl")[0]["device"]["cuda"] is None
    from pointgcn.data.synthetic.shapes import write_shapes
    write_shapes(tmp_path / "data", n_per_class=2, seed=0)
    cfg = {"seed": 0, "model": TINY_MODEL,
           "data": {"dataset": "modelnet40", "root": str(tmp_path / "data" / "ModelNet40"),
                    "n_points": 32, "val_fraction": 0.3, "augment": False},
           "search": {"warmup_epochs": 0, "decision_freq": 1, "epochs": 1, "batch_size": 2,
                      "max_batches": 1}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["search", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "s"),
                 "--no-progress", "--device", "cpu"]) == 0
    assert yaml.safe_load((tmp_path / "s" / "config.yaml").read_text())["device"] == "cpu"
    capsys.readouterr()
