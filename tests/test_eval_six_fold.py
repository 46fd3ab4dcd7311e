"""`pointgcn eval --six-fold` through the CLI: six checkpoints, the i-th on Area_i, matrices
summed, and the calibration pooled over every fold's points (with --reliability drawn)."""
import json

import pytest
import yaml

from apps.cli import main
from conftest import rooms_config, tiny_room_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


def test_six_fold_sums_the_folds_and_pools_calibration(synth_root, tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(rooms_config(synth_root)))
    ckpt = str(tiny_room_checkpoint(tmp_path / "seg.pt", 256, 2.0))
    single = []
    for area in range(1, 7):
        out = tmp_path / f"a{area}.json"
        assert main(["eval", str(cfg), f"data.test_area={area}", "--ckpt", ckpt, "--no-rooms",
                     "--bootstrap", "0", "--no-progress", "--json", str(out)]) == 0
        single.append(json.loads(out.read_text())["per_block"])
    png, out = tmp_path / "rel.png", tmp_path / "six.json"
    assert main(["eval", str(cfg), "--ckpt", *[ckpt] * 6, "--six-fold", "--no-rooms",
                 "--bootstrap", "20", "--no-progress", "--reliability", str(png),
                 "--json", str(out)]) == 0
    six = json.loads(out.read_text())["per_block"]
    assert six["confusion"] == [[sum(s["confusion"][i][j] for s in single)
                                 for j in range(13)] for i in range(13)]
    cal = six["calibration"]
    assert cal["points"] == sum(s["calibration"]["points"] for s in single)
    assert len(cal["temperatures"]) == 6
    # pooled bins: by the triangle inequality at most the points-weighted mean of the folds'
    weighted = sum(s["calibration"]["ece_after"] * s["calibration"]["points"] for s in single)
    assert 0 < cal["ece_after"] <= weighted / cal["points"] + 1e-12
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
