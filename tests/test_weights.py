"""Shipped weights: names resolve to hash-verified files; a tampered file is refused."""
import re

import pytest
import torch
import yaml

from pointgcn.errors import InputError
from pointgcn.export import open_model
from pointgcn.models import build_model, read_checkpoint, save_checkpoint
from pointgcn.models.weights import read_manifest, resolve_weights, ship_checkpoint, weights_dir


@pytest.fixture
def shipped(tmp_path):
    cfg = {"data": {"dataset": "modelnet40", "n_points": 64},
           "model": dict(n_blocks=3, channels=8, k=4, in_channels=3, n_classes=4,
                         task="classification", fusion_channels=16, prediction=[8])}
    save_checkpoint(tmp_path / "run.pt", build_model(cfg), cfg, train_state={"x": 1})
    card = {"task": "classification", "data": "tiny", "command": "pointgcn train …",
            "metrics": {"oa": 0.5}, "accuracy": {"metric": "oa", "value": 0.5, "data": "t"}}
    folder = tmp_path / "weights"
    folder.mkdir()
    entry = ship_checkpoint(tmp_path / "run.pt", "tiny-cls", card, folder)
    return folder, entry


def test_ship_and_resolve(shipped):
    folder, entry = shipped
    path = resolve_weights("tiny-cls", folder)
    assert path == folder / "tiny-cls.pt"
    assert "train_state" not in torch.load(path, weights_only=True)
    assert open_model(path).module.cfg["n_classes"] == 4
    assert read_manifest(folder) == [entry]
    text = (folder / "tiny-cls.md").read_text()
    assert text.startswith("# tiny-cls\n") and card_table(text) == {"oa": "0.5000"}
    assert card_config(text) == torch.load(path, weights_only=True)["config"]


def test_tampered_file_is_refused(shipped):
    folder, _ = shipped
    data = bytearray((folder / "tiny-cls.pt").read_bytes())
    data[-10] ^= 0xFF
    (folder / "tiny-cls.pt").write_bytes(bytes(data))
    with pytest.raises(InputError, match="sha256 mismatch"):
        resolve_weights("tiny-cls", folder)


def test_unknown_name_lists_shipped(shipped):
    folder, _ = shipped
    with pytest.raises(InputError, match="shipped: tiny-cls"):
        resolve_weights("nope", folder)
    with pytest.raises(InputError, match="not found"):
        resolve_weights("missing/file.pt", folder)


def card_config(text: str) -> dict:
    """The run config a model card embeds (its ```yaml block)."""
    return yaml.safe_load(text.split("```yaml\n", 1)[1].split("```", 1)[0])


def card_table(text: str) -> dict:
    """{metric: value text} from a model card's metrics table."""
    rows = re.findall(r"^\| (.+?) \| (.+?) \|$", text.split("## Held-out metrics", 1)[1], re.M)
    return {name: value for name, value in rows if name != "metric"}


def test_repository_weights_verify_and_load():
    entries = read_manifest(weights_dir())
    if not entries:
        pytest.skip("no shipped weights in this checkout")
    for e in entries:
        path = resolve_weights(e["name"])
        model = open_model(path).module
        assert model.cfg["task"] == e["task"] and model.cfg["in_channels"] == e["in_channels"]
        assert e["size_bytes"] == path.stat().st_size < 10_000_000
        ckpt = read_checkpoint(path)
        text = (weights_dir() / e["card"]).read_text()
        provenance = "trained on real data" if e.get("real_data") else "synthetic"
        assert provenance in text and e["sha256"] in text
        assert card_config(text) == ckpt["config"]  # the card describes this very file
        table = card_table(text)
        # the headline figure of the manifest is a row of the card, to its 4 decimals …
        assert f"{e['accuracy']['value']:.4f}" in table.values()
        # … and the card's best validation row is the one the checkpoint stored
        meta = ckpt["meta"]
        best = [v for name, v in table.items() if name.startswith("best validation")]
        assert best == [f"{meta['metrics'][meta['key_metric']]:.4f}"], (e["name"], best)


def test_card_gives_ece_when_the_checkpoint_records_it(tmp_path):
    cfg = {"data": {"dataset": "modelnet40", "n_points": 64},
           "model": dict(n_blocks=3, channels=8, k=4, in_channels=3, n_classes=4,
                         task="classification", fusion_channels=16, prediction=[8])}
    record = {"temperature": 1.734, "points": 1200, "bins": 15, "ece_before": 0.1234,
              "ece_after": 0.0321, "fitted_on": "validation split",
              "measured_on": "the same validation points (in-sample for the temperature)"}
    save_checkpoint(tmp_path / "run.pt", build_model(cfg), cfg,
                    meta={"temperature": 1.734, "calibration": record})
    card = {"task": "classification", "data": "tiny", "command": "pointgcn train …",
            "metrics": {"oa": 0.5}, "accuracy": {"metric": "oa", "value": 0.5, "data": "t"}}
    (tmp_path / "w").mkdir()
    ship_checkpoint(tmp_path / "run.pt", "cal", card, tmp_path / "w")
    text = (tmp_path / "w" / "cal.md").read_text()
    assert "Temperature 1.734" in text and "ECE 0.1234 before, 0.0321 after" in text
    assert open_model(resolve_weights("cal", tmp_path / "w")).predictor().temperature == 1.734


def test_record_calibration_on_a_shipped_model(shipped):
    from pointgcn.models.weights import record_calibration

    folder, entry = shipped
    before = torch.load(folder / "tiny-cls.pt", weights_only=True)
    record = {"temperature": 0.5, "points": 10, "bins": 15, "ece_before": 0.2,
              "ece_after": 0.05, "fitted_on": "validation split", "measured_on": "the same"}
    for t in (0.5, 0.75):  # twice: the card's section is replaced, not repeated
        new = record_calibration("tiny-cls", {**record, "temperature": t}, folder)
    path = resolve_weights("tiny-cls", folder)  # the manifest's hash follows the file
    after = torch.load(path, weights_only=True)
    assert all(torch.equal(before["state_dict"][k], v) for k, v in after["state_dict"].items())
    assert open_model(path).predictor().temperature == 0.75
    text = (folder / "tiny-cls.md").read_text()
    assert text.count("## Calibration") == 1 and "Temperature 0.750" in text
    assert f"sha256 `{new['sha256']}`" in text and new["sha256"] != entry["sha256"]
    assert text.index("## Calibration") < text.index("## Config")
