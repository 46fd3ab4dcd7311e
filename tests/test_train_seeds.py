"""`train --seeds`: one run per seed, a summary whose mean/std are numpy's on the per-seed
values; each run's checkpoints carry a temperature fitted on the validation split."""
import json

import numpy as np
import torch
import pytest
import yaml
from conftest import shapes_config

from apps.cli import main
from pointgcn.data.build import build_datasets
from pointgcn.engine.calibration import calibration_report, fit_temperature
from pointgcn.engine.calibration_hook import validation_logits
from pointgcn.engine.trainer import Trainer
from pointgcn.models import read_checkpoint


def test_train_seeds_summary_and_calibrated_checkpoints(synth_root, tmp_path, capsys):
    cfg = shapes_config(synth_root, epochs=1, batch_size=8)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "recipe"
    assert main(["train", str(path), "--seeds", "0,1", "--out", str(out),
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "over 2 seeds" in printed
    summary = json.loads((out / "seeds.json").read_text())
    per_seed = [json.loads((out / f"seed-{s}" / "metrics.json").read_text()) for s in (0, 1)]
    oa = [m["last"]["oa"] for m in per_seed]
    assert summary["final_validation"]["oa"]["values"] == oa
    assert summary["final_validation"]["oa"]["mean"] == pytest.approx(np.mean(oa))
    assert summary["final_validation"]["oa"]["std"] == pytest.approx(np.std(oa, ddof=1))
    assert "points" not in summary["final_validation"]  # a count, not a score
    loss = [m["last"]["loss"] for m in per_seed]
    assert summary["final_validation"]["loss"]["mean"] == pytest.approx(np.mean(loss))
    # each seed really is its own run (different seeds in the configs)
    seeds = [yaml.safe_load((out / f"seed-{s}" / "config.yaml").read_text())["seed"]
             for s in (0, 1)]
    assert seeds == [0, 1]

    # the temperature in best.pt is the NLL optimum on the validation split's logits of
    # best.pt's own weights (recomputed independently here), never the training split's
    ckpt = read_checkpoint(out / "seed-1" / "checkpoints" / "best.pt")
    t = ckpt["meta"]["temperature"]
    assert t > 0 and ckpt["meta"]["calibration"]["fitted_on"] == "validation split"
    run_cfg = {**cfg, "seed": 1}
    data = build_datasets(run_cfg)
    run_cfg["model"].update(in_channels=data.in_channels, n_classes=len(data.class_names),
                            task=data.task)
    trainer = Trainer(run_cfg, tmp_path / "scratch", data, progress=False)
    trainer.model.load_state_dict(ckpt["state_dict"])
    z, y = validation_logits(trainer, trainer.model)
    assert len(y) == len(data.val)
    assert fit_temperature(z, y) == pytest.approx(t, rel=1e-6)
    assert ckpt["meta"]["calibration"]["ece_after"] == pytest.approx(
        calibration_report(z, y, t)["ece_after"])
    assert per_seed[1]["calibration"]["temperature"] == t


def test_seeds_refused_with_resume_or_seed(synth_root, tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(shapes_config(synth_root)))
    assert main(["train", str(path), "--seed", "1", "--seeds", "0,1"]) == 2
    assert "--seed or --seeds" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path), "--seeds", "0,1"]) == 2
    assert "--seeds" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", str(path), "--seeds", "0,0"])
    assert list(tmp_path.iterdir()) == [path]  # nothing written


def test_part_segmentation_temperature_is_over_the_parts(synth_root, tmp_path):
    """PartNet never predicts "other" (0) and ignores its points: the temperature is fitted
    on the parts' softmax (classes ≥ 1) of points labelled ≥ 1."""
    from conftest import tiny_model

    from pointgcn.engine.calibration_hook import TemperatureHook
    from pointgcn.engine.calibration import flatten_logits

    cfg = {"seed": 0, "data": {"dataset": "partnet", "root": str(synth_root / "sem_seg_h5"),
                               "category": "Chair", "n_points": 128, "val_fraction": 0.3},
           "model": tiny_model(), "train": {"epochs": 1, "batch_size": 4, "lr": 0.01}}
    data = build_datasets(cfg)
    cfg["model"].update(in_channels=data.in_channels, n_classes=len(data.class_names),
                        task=data.task)
    trainer = Trainer(cfg, tmp_path / "run", data, progress=False, hooks=[TemperatureHook()])
    trainer.fit()
    ckpt = read_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    trainer.model.load_state_dict(ckpt["state_dict"])
    trainer.model.eval()
    zs, ys = [], []
    with torch.no_grad():
        for i in range(len(data.val)):
            x, y = data.val[i]
            z, yy = flatten_logits(trainer.model(torch.as_tensor(x)[None]).numpy(), y[None])
            zs.append(z[yy > 0][:, 1:])
            ys.append(yy[yy > 0] - 1)
    z, y = np.concatenate(zs), np.concatenate(ys)
    assert ckpt["meta"]["calibration"]["points"] == len(y)
    assert ckpt["meta"]["temperature"] == pytest.approx(fit_temperature(z, y), rel=1e-5)


def test_a_failing_seed_leaves_no_partial_recipe(synth_root, tmp_path, capsys, monkeypatch):
    import apps.train as train_app
    from pointgcn.errors import ConfigError

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(shapes_config(synth_root, epochs=1)))
    real = train_app._train_one

    def second_fails(cfg, run_dir, args, d):
        if cfg["seed"] == 1:
            raise ConfigError("training diverged (simulated)")
        return real(cfg, run_dir, args, d)

    monkeypatch.setattr(train_app, "_train_one", second_fails)
    out = tmp_path / "recipe"
    assert main(["train", str(path), "--seeds", "0,1", "--out", str(out),
                 "--no-progress"]) == 2
    assert not out.exists()
    keep = tmp_path / "mine"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    assert main(["train", str(path), "--seeds", "0,1", "--out", str(keep),
                 "--no-progress"]) == 2
    assert [p.name for p in keep.iterdir()] == ["notes.txt"]  # the user's file untouched


def test_validation_logits_subsample_as_they_come(synth_root, tmp_path):
    from conftest import rooms_config

    cfg = rooms_config(synth_root)
    data = build_datasets(cfg)
    cfg["model"].update(in_channels=data.in_channels, n_classes=len(data.class_names),
                        task=data.task)
    trainer = Trainer(cfg, tmp_path / "run", data, progress=False)
    z_all, y_all = validation_logits(trainer, trainer.model)
    assert len(y_all) == len(data.val) * 256          # every labelled point when few
    z, y = validation_logits(trainer, trainer.model, max_points=300)
    assert 0 < len(y) <= 300
    z2, y2 = validation_logits(trainer, trainer.model, max_points=300)
    assert (z == z2).all() and (y == y2).all()        # seeded
    rows = {r.tobytes() for r in z_all}
    assert all(r.tobytes() in rows for r in z)         # real rows of the full set
