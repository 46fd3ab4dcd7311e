"""Trainer: the loss falls, "best" is the best, a killed run resumes exactly, torchrun works."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from conftest import rooms_config, shapes_config

from pointgcn.data.build import build_datasets
from pointgcn.engine.trainer import Trainer
from pointgcn.errors import ConfigError
from pointgcn.models import read_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _fit(cfg, run_dir):
    data = build_datasets(cfg)
    cfg["model"].update(in_channels=data.in_channels, n_classes=len(data.class_names),
                        task=data.task)
    return Trainer(cfg, run_dir, data, progress=False), data


def test_loss_falls_and_best_is_best(synth_root, tmp_path):
    cfg = shapes_config(synth_root, epochs=5, lr=0.01)
    trainer, data = _fit(cfg, tmp_path / "run")
    final = trainer.fit()
    hist = trainer.state["history"]
    train_loss = [r["loss"] for r in hist if r["split"] == "train"]
    assert train_loss[-1] < 0.9 * train_loss[0]
    vals = [r["oa"] for r in hist if r["split"] == "val"]
    assert final["best"]["oa"] == max(vals)
    assert final["best"]["epoch"] == 1 + vals.index(max(vals))
    best = read_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")
    assert best["meta"]["metrics"]["oa"] == max(vals)
    # the stored weights reproduce the recorded validation metric
    trainer.model.load_state_dict(best["state_dict"])
    assert trainer.validate()["oa"] == pytest.approx(max(vals))
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["split"] for x in lines] == ["train", "val"] * 5


def test_segmentation_trains_on_rooms(synth_root, tmp_path):
    trainer, _ = _fit(rooms_config(synth_root, epochs=2), tmp_path / "run")
    final = trainer.fit()
    assert 0.0 <= final["last"]["miou"] <= 1.0
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()


def test_config_errors(synth_root, tmp_path):
    cfg = shapes_config(synth_root)
    cfg["train"]["epochz"] = 3
    with pytest.raises(ConfigError, match="epochz"):
        _fit(cfg, tmp_path / "a")
    cfg = shapes_config(synth_root)
    cfg["model"]["n_classes"] = 3
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    out = subprocess.run([sys.executable, "-m", "apps.cli", "train", str(cfg_path),
                          "--out", str(tmp_path / "b"), "--no-progress"],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "error: model.n_classes is 3 but the data set gives 13"]


def test_data_n_points_must_be_positive(synth_root, tmp_path):
    cfg = shapes_config(synth_root)
    cfg["data"]["n_points"] = 0
    with pytest.raises(ConfigError, match="data.n_points must be an integer ≥ 1, got 0"):
        _fit(cfg, tmp_path / "a")


def test_bad_train_settings(synth_root, tmp_path):
    cfg = shapes_config(synth_root, best_metric="mIoU")
    with pytest.raises(ConfigError, match="best_metric"):
        _fit(cfg, tmp_path / "a")
    cfg = shapes_config(synth_root, epochs="ten")
    with pytest.raises(ConfigError, match="train.epochs must be an integer"):
        _fit(cfg, tmp_path / "b")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("model: {}\n")
    out = subprocess.run([sys.executable, "-m", "apps.cli", "train", "--resume",
                          str(tmp_path / "run"), "train.lr=0.1"],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 2 and "takes no CONFIG, overrides" in out.stderr


@pytest.mark.parametrize("train,msg", [
    ({"batch_size": 1}, "train.batch_size must be ≥ 2"),
    ({"lr": "1e12", "optimizer": "sgd"}, "training diverged: loss is"),
])
def test_failed_new_run_leaves_nothing(synth_root, tmp_path, capsys, train, msg):
    """One line, exit 2, and no half-made run folder (a user-made folder keeps its files)."""
    from apps.cli import main

    cfg = shapes_config(synth_root, epochs=1)
    cfg["train"].update(train)
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg).replace("'1e12'", "1e12"))
    assert main(["train", str(cfg_path), "--out", str(tmp_path / "new"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and msg in err[0]
    assert not (tmp_path / "new").exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    assert main(["train", str(cfg_path), "--out", str(mine), "--no-progress"]) == 2
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]


def _train_cmd(cfg_path, out, *extra):
    return [sys.executable, "-m", "apps.cli", "train", str(cfg_path), "--out", str(out),
            "--no-progress", "--threads", "1", *extra]


def test_resume_after_sigkill_matches_uninterrupted(synth_root, tmp_path):
    cfg = shapes_config(synth_root, epochs=3, batch_size=4, ckpt_every_steps=3)
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    subprocess.run(_train_cmd(cfg_path, tmp_path / "full"), check=True, cwd=ROOT,
                   capture_output=True)
    proc = subprocess.Popen(_train_cmd(cfg_path, tmp_path / "cut"), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = tmp_path / "cut" / "checkpoints" / "last.pt"
    deadline = time.time() + 120
    while not last.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (tmp_path / "cut" / "metrics.json").exists()
    stopped = read_checkpoint(last)["train_state"]
    assert stopped["epoch"] < 3
    subprocess.run(_train_cmd("", tmp_path / "cut")[:4] + ["--resume", str(tmp_path / "cut"),
                                                           "--no-progress", "--threads", "1"],
                   check=True, cwd=ROOT, capture_output=True)
    full = json.loads((tmp_path / "full" / "metrics.json").read_text())
    cut = json.loads((tmp_path / "cut" / "metrics.json").read_text())
    assert cut == full
    a = read_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt")["state_dict"]
    b = read_checkpoint(last)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert ((tmp_path / "cut" / "metrics.jsonl").read_text()
            == (tmp_path / "full" / "metrics.jsonl").read_text())


def test_torchrun_two_processes(synth_root, tmp_path):
    cfg = shapes_config(synth_root, epochs=1, batch_size=4)
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "apps.cli", "train", str(cfg_path), "--out", str(tmp_path / "ddp"),
           "--no-progress", "--threads", "1"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [json.loads(x) for x in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    val = next(r for r in rows if r["split"] == "val")
    data = build_datasets(cfg, ("val",))
    assert val["points"] == len(data.val)    # both ranks' shards, each sample counted once
    ckpt = read_checkpoint(tmp_path / "ddp" / "checkpoints" / "last.pt")
    assert ckpt["train_state"]["world"] == 2 and len(ckpt["train_state"]["rng"]) == 2
    # one process per CPU share over gloo: the device is recorded as its kind
    assert yaml.safe_load((tmp_path / "ddp" / "config.yaml").read_text())["device"] == "cpu"


@pytest.fixture(scope="module")
def extended(synth_root, tmp_path_factory):
    """A 2-epoch run extended to 3 with `--resume RUN train.epochs=3`, and a 3-epoch run."""
    from apps.cli import main

    tmp = tmp_path_factory.mktemp("extend")
    cfg = shapes_config(synth_root, epochs=2, scheduler="step", step_size=1, gamma=0.5)
    (tmp / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", str(tmp / "c.yaml"), "--out", str(tmp / "short"),
                 "--no-progress"]) == 0
    assert main(["train", "--resume", str(tmp / "short"), "train.epochs=3",
                 "--no-progress"]) == 0
    assert main(["train", str(tmp / "c.yaml"), "train.epochs=3", "--out", str(tmp / "long"),
                 "--no-progress"]) == 0
    return tmp


def test_extended_run_equals_a_longer_run(extended):
    """Same weights, log, metrics and config as the run trained 3 epochs straight (the step
    schedule does not depend on the total)."""
    short, long = extended / "short", extended / "long"
    for name in ("metrics.jsonl", "metrics.json", "config.yaml"):
        assert (short / name).read_text() == (long / name).read_text(), name
    a = read_checkpoint(short / "checkpoints" / "last.pt")
    b = read_checkpoint(long / "checkpoints" / "last.pt")
    assert a["train_state"]["epoch"] == 3 and a["config"] == b["config"]
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])


def test_extension_rules(extended, synth_root, tmp_path, capsys):
    """Never fewer epochs than done, even when stopped inside an epoch."""
    from apps.cli import main

    assert main(["train", "--resume", str(extended / "short"), "train.epochs=2"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: train.epochs=2 is fewer than the 3 epochs this run has already started"]
    # stopped inside its third epoch: 2 epochs would drop the part of the third it trained
    import shutil
    shutil.copytree(extended / "short", tmp_path / "cut")
    last = tmp_path / "cut" / "checkpoints" / "last.pt"
    ckpt = torch.load(last, weights_only=True)
    ckpt["train_state"].update(epoch=2, batch=1)
    torch.save(ckpt, last)
    assert main(["train", "--resume", str(tmp_path / "cut"), "train.epochs=2"]) == 2
    assert "fewer than the 3 epochs" in capsys.readouterr().err


def test_extended_cosine_run_restarts_and_equals_that_plan(synth_root, tmp_path, capsys):
    """A cosine run lengthened from 2 to 3 epochs starts its cosine over at epoch 2 (a warm
    restart recorded as train.restarts): the same weights and log as a run planned so."""
    from apps.cli import main

    cfg = shapes_config(synth_root, epochs=2, scheduler="cosine", min_lr=0.0)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    for out, extra in (("short", ["train.epochs=2"]), ("plan", ["train.epochs=3",
                                                                "train.restarts=[2]"])):
        assert main(["train", str(tmp_path / "c.yaml"), *extra, "--out", str(tmp_path / out),
                     "--no-progress"]) == 0
    assert main(["train", "--resume", str(tmp_path / "short"), "train.epochs=3"]) == 0
    capsys.readouterr()
    rows = {k: [json.loads(line) for line in (tmp_path / k / "metrics.jsonl").read_text()
                .splitlines()] for k in ("short", "plan")}
    assert [r["lr"] for r in rows["short"] if r["split"] == "train"] == \
        [r["lr"] for r in rows["plan"] if r["split"] == "train"] == [0.01, 0.005, 0.01]
    assert rows["short"] == rows["plan"]
    assert yaml.safe_load((tmp_path / "short" / "config.yaml").read_text())["train"][
        "restarts"] == [2]
    a = torch.load(tmp_path / "short" / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "plan" / "checkpoints" / "last.pt", weights_only=True)
    for k in a["state_dict"]:
        torch.testing.assert_close(a["state_dict"][k], b["state_dict"][k], rtol=0, atol=0)


def test_eval_without_config_uses_the_checkpoints(extended, tmp_path, capsys):
    """`eval --ckpt CKPT`: the data set the run trained on, overridable with key=value."""
    from apps.cli import main

    best = str(extended / "long" / "checkpoints" / "best.pt")
    assert main(["eval", str(extended / "c.yaml"), "--ckpt", best, "--json",
                 str(tmp_path / "a.json"), "--no-progress"]) == 0
    assert main(["eval", "--ckpt", best, "--json", str(tmp_path / "b.json"),
                 "--no-progress"]) == 0
    assert json.loads((tmp_path / "a.json").read_text()) == \
        json.loads((tmp_path / "b.json").read_text())
    capsys.readouterr()
    for argv in (["eval", "data.root=" + str(tmp_path / "none"), "--ckpt", best],
                 ["eval", "--ckpt", best, "data.root=" + str(tmp_path / "none")]):
        assert main(argv + ["--no-progress"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(tmp_path / "none") in err[0], err


@pytest.mark.parametrize("change", ["no_train_state", "no_format", "bad_optimizer"])
def test_resume_refuses_unusable_training_state(extended, tmp_path, capsys, change):
    import shutil

    from apps.cli import main

    shutil.copytree(extended / "short", tmp_path / "run")
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    ckpt = torch.load(last, weights_only=True)
    if change == "no_train_state":
        del ckpt["train_state"]
    elif change == "no_format":
        del ckpt["format"]
    else:
        ckpt["train_state"]["optimizer"] = {"state": {}, "param_groups": []}
    torch.save(ckpt, last)
    assert main(["train", "--resume", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {last}: "), err


def _lrs(run) -> list[float]:
    return [json.loads(line)["lr"] for line in (run / "metrics.jsonl").read_text().splitlines()
            if json.loads(line)["split"] == "train"]


def test_shortened_cosine_run_records_no_restart(synth_root, tmp_path, capsys):
    """A cosine run planned for 4 epochs, stopped after 2, resumed with train.epochs=3: its
    cosine anneals to the new end (closed form), no restart past the end is recorded, and the
    run resumes again; --out elsewhere is refused."""
    import math

    from apps.cli import main

    cfg = shapes_config(synth_root, epochs=2, scheduler="cosine", min_lr=0.0, max_batches=1)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    run = tmp_path / "run"
    assert main(["train", str(tmp_path / "c.yaml"), "--out", str(run), "--no-progress"]) == 0
    # what a 4-epoch run killed after its second epoch's checkpoint leaves behind
    last = run / "checkpoints" / "last.pt"
    ckpt = torch.load(last, weights_only=True)
    ckpt["config"]["train"]["epochs"] = 4
    torch.save(ckpt, last)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    saved["train"]["epochs"] = 4
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    (run / "metrics.json").unlink()
    assert main(["train", "--resume", str(run), "--out", str(tmp_path / "elsewhere")]) == 2
    assert "leave out --out" in capsys.readouterr().err
    assert not (tmp_path / "elsewhere").exists()
    assert main(["train", "--resume", str(run), "train.epochs=3", "--no-progress"]) == 0
    train = yaml.safe_load((run / "config.yaml").read_text())["train"]
    assert train["epochs"] == 3 and not train.get("restarts"), train
    assert _lrs(run)[2] == pytest.approx(0.01 * 0.5 * (1 + math.cos(math.pi * 2 / 3)))
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    capsys.readouterr()


def test_extension_killed_before_its_first_checkpoint(synth_root, tmp_path, capsys,
                                                      monkeypatch):
    """Extending a finished cosine run, killed before its first new checkpoint, leaves the
    run as it was; resumed after a kill between config.yaml and that checkpoint, it records
    its restart once and equals the run planned with it."""
    from apps.cli import main

    cfg = shapes_config(synth_root, epochs=2, scheduler="cosine", min_lr=0.0, max_batches=1)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    for out, extra in (("short", []), ("plan", ["train.epochs=3", "train.restarts=[2]"])):
        assert main(["train", str(tmp_path / "c.yaml"), *extra, "--out", str(tmp_path / out),
                     "--no-progress"]) == 0
    short = tmp_path / "short"
    before = {name: (short / name).read_text() for name in ("config.yaml", "metrics.json")}

    def killed(self, epoch):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_train_epoch", killed)
    assert main(["train", "--resume", str(short), "train.epochs=3", "--no-progress"]) == 130
    assert {name: (short / name).read_text() for name in before} == before
    monkeypatch.undo()
    saved = yaml.safe_load(before["config.yaml"])  # as a kill after config.yaml leaves it
    saved["train"].update(epochs=3, restarts=[2])
    (short / "config.yaml").write_text(yaml.safe_dump(saved))
    # back to 2 epochs: the restart at 2 never happens, so it leaves the record
    assert main(["train", "--resume", str(short), "train.epochs=2", "--no-progress"]) == 0
    train = yaml.safe_load((short / "config.yaml").read_text())["train"]
    assert train["epochs"] == 2 and not train.get("restarts"), train
    (short / "config.yaml").write_text(yaml.safe_dump(saved))
    assert main(["train", "--resume", str(short), "--no-progress"]) == 0
    assert yaml.safe_load((short / "config.yaml").read_text())["train"]["restarts"] == [2]
    assert _lrs(short) == _lrs(tmp_path / "plan") == [0.01, 0.005, 0.01]
    assert main(["train", "--resume", str(short), "--no-progress"]) == 0  # still resumable
    capsys.readouterr()
