"""wt-rev and deq backbones through the CLI: `pointgcn train`, the checkpoint, `pointgcn info`."""
import json

import pytest
import torch
import yaml
from conftest import shapes_config, tiny_model

from apps.cli import main
from pointgcn.models import read_checkpoint


@pytest.mark.parametrize("block,extra", [("wt-rev", []), ("deq", ["model.deq.max_iter=8",
                                                                    "model.deq.export_iters=6"])])
def test_train_builds_trains_and_reloads(synth_root, tmp_path, capsys, block, extra):
    cfg = shapes_config(synth_root, epochs=1)
    cfg["model"] = tiny_model(block=block)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    code = main(["train", str(tmp_path / "c.yaml"), *extra, "--out", str(tmp_path / "run"),
                 "--no-progress", "--threads", "1"])
    out, err = capsys.readouterr()
    assert code == 0, err
    ckpt = read_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")
    model_cfg = ckpt["config"]["model"]
    assert model_cfg["block"] == block and model_cfg["fusion_input"] == "last"
    if block == "deq":
        assert model_cfg["deq"]["max_iter"] == 8 and model_cfg["deq"]["export_iters"] == 6
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values()
               if v.is_floating_point())


def test_info_lists_the_memory_efficient_blocks(capsys):
    assert main(["info", "--json"]) == 0
    blocks = json.loads(capsys.readouterr().out)["blocks"]
    assert blocks[-3:] == ["rev", "wt-rev", "deq"]
