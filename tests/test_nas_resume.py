"""Search runs are reproducible: same seed → bit-identical α and genotype at 2 threads, and
`search --resume` continues a stopped search to exactly the result of an uninterrupted one."""
import json

import pytest
import torch
import yaml

from apps.cli import main

from test_nas_search import MODEL, SEARCH, _config, shapes  # noqa: F401  (a fixture)

pytestmark = pytest.mark.usefixtures("one_thread")


def _search(cfg, out, *extra):
    assert main(["search", str(cfg), "--method", "sgas", "--out", str(out), "--no-progress",
                 *extra]) == 0
    log = [json.loads(line) for line in (out / "search_log.jsonl").read_text().splitlines()]
    return yaml.safe_load((out / "genotype.yaml").read_text()), log


def test_same_seed_same_alphas_and_genotype_at_two_threads(shapes, tmp_path, capsys):
    # 3 clouds a batch: two threads split one cloud's gathered rows between them, the case
    # where the gathers' gradients once took a different order (and rounding) every run
    cfg = _config(tmp_path / "c.yaml", shapes, model={**MODEL, "channels": 48, "k": 8},
                  search={**SEARCH, "epochs": 1, "batch_size": 3, "batch_increase": 0,
                          "max_batches": 2})
    first, log1 = _search(cfg, tmp_path / "a", "--threads", "2")
    second, log2 = _search(cfg, tmp_path / "b", "--threads", "2")
    assert first == second
    assert [r["alpha"] for r in log1] == [r["alpha"] for r in log2]  # bit for bit (repr)


def test_resume_continues_a_killed_search_exactly(shapes, tmp_path, capsys, monkeypatch):
    from pointgcn.engine.run_folder import LAST as STATE_FILE
    from pointgcn.engine.trainer import Trainer

    search = {**SEARCH, "epochs": 4, "batch_increase": 1}  # decisions at every epoch
    cfg = _config(tmp_path / "c.yaml", shapes, model={**MODEL, "dropout": 0.3}, search=search)
    genotype, log = _search(cfg, tmp_path / "whole")

    steps, real_step = [0], Trainer._step

    def dies_in_epoch_3(self, *a):  # the 6th step: epoch 3's second batch
        steps[0] += 1
        if steps[0] == 6:
            raise KeyboardInterrupt
        return real_step(self, *a)
    monkeypatch.setattr(Trainer, "_step", dies_in_epoch_3)
    out = tmp_path / "killed"
    assert main(["search", str(cfg), "--method", "sgas", "--out", str(out), "--no-progress"]) == 130
    monkeypatch.undo()
    assert (out / STATE_FILE).is_file() and not (out / "genotype.yaml").exists()
    assert len((out / "search_log.jsonl").read_text().splitlines()) == 2
    torch.manual_seed(1234)  # whatever the process did meanwhile
    resumed, log2 = _search(cfg, out, "--resume", str(out))
    assert resumed == genotype
    for a, b in zip(log, log2, strict=True):
        assert {k: v for k, v in a.items() if k != "time_s"} == \
            {k: v for k, v in b.items() if k != "time_s"}
    capsys.readouterr()


def test_resume_refuses_another_config_and_finished_or_missing_searches(shapes, tmp_path,
                                                                          capsys):
    from pointgcn.engine.run_folder import LAST as STATE_FILE

    cfg = _config(tmp_path / "c.yaml", shapes, search={**SEARCH, "epochs": 1})
    out = tmp_path / "run"
    _search(cfg, out)
    (out / "search.json").unlink()  # as if it had been killed after its last epoch
    state = (out / STATE_FILE).read_bytes()
    argv = ["search", str(cfg), "--method", "sgas", "--no-progress", "--resume", str(out)]
    assert main(argv[:2] + ["search.lr=0.02"] + argv[2:]) == 2
    err = _one_line(capsys)
    assert "another config (search.lr: 0.005 → 0.02" in err
    assert (out / STATE_FILE).read_bytes() == state
    assert main(argv + ["--threads", "2"]) == 2
    assert "saved with --threads 1, resuming with 2; give --threads 1" in _one_line(capsys)
    torch.set_num_threads(1)
    assert main(argv[:2] + ["--method", "sgas", "--out", str(out), "--no-progress"]) == 2
    assert f"continue it with --resume {out}" in _one_line(capsys)
    assert main(argv) == 0  # nothing left to run: the genotype and search.json again
    capsys.readouterr()
    assert main(argv) == 2
    assert "finished (search.json)" in _one_line(capsys)
    assert main(argv[:-1] + [str(tmp_path / "nothing")]) == 2
    assert "no search to resume" in _one_line(capsys)


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]
