"""Checkpoints rebuild their model from themselves alone, refuse NaN/Inf and crafted layouts,
and the attack corpus through every stage that loads one: exit 2, one line, nothing written."""
import numpy as np
import pytest
import torch
import yaml
from conftest import shapes_config, tiny_model

from apps.cli import main
from pointgcn.errors import FormatError, InputError
from pointgcn.io import PointCloud, write_ply
from pointgcn.export import open_model
from pointgcn.models import build_model, read_checkpoint, save_checkpoint
from pointgcn.nas.genotype import Genotype, save_genotype

pytestmark = pytest.mark.usefixtures("one_thread")

# Same weight shapes, different function: edge_conv ↔ mr_conv, semi_gcn ↔ conv_1x1.
CELL = Genotype([[("edge_conv", 0), ("semi_gcn", 1)], [("conv_1x1", 2)], [("edge_conv", 3)]],
                cells=1, channels=8, k=4)
TWIN = Genotype([[("mr_conv", 0), ("conv_1x1", 1)], [("semi_gcn", 2)], [("mr_conv", 3)]],
                cells=1, channels=8, k=4)


def test_searched_model_embeds_its_genotype(synth_root, tmp_path, monkeypatch):
    """Trained with `model.genotype=FILE` (a relative path): the run's config.yaml and its
    checkpoints hold the cell, so replacing the file or loading from elsewhere changes
    nothing."""
    work = tmp_path / "work"
    work.mkdir()
    save_genotype(CELL, work / "genotype.yaml")
    cfg = shapes_config(synth_root, epochs=1)
    cfg["model"] = {"name": "nas", "fusion_channels": 16, "prediction": [16], "dropout": 0.1}
    (work / "c.yaml").write_text(yaml.safe_dump(cfg))
    monkeypatch.chdir(work)
    assert main(["train", "c.yaml", "model.genotype=genotype.yaml", "--out", "run",
                 "--no-progress"]) == 0
    ckpt = work / "run" / "checkpoints" / "last.pt"
    x = torch.randn(2, 3, 64)
    with torch.no_grad():
        before = open_model(ckpt).module(x)
    save_genotype(TWIN, work / "genotype.yaml")          # another cell at the same path
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with torch.no_grad():
        assert torch.equal(open_model(ckpt).module(x), before)
    (work / "genotype.yaml").unlink()
    with torch.no_grad():
        assert torch.equal(open_model(ckpt).module(x), before)
    written = yaml.safe_load((work / "run" / "config.yaml").read_text())["model"]["genotype"]
    assert Genotype.from_dict(written) == CELL
    assert Genotype.from_dict(read_checkpoint(ckpt)["config"]["model"]["genotype"]) == CELL


def test_checkpoint_naming_a_genotype_file_is_refused(tmp_path):
    """An older checkpoint holding only the path: loading never reads it (the file there may
    be another cell with the same weight shapes); an explicit genotype is the user's word."""
    save_genotype(CELL, tmp_path / "g.yaml")
    model = build_model({"name": "nas", "genotype": CELL.to_dict(), "n_classes": 4})
    cfg = {"model": {**model.cfg, "genotype": str(tmp_path / "g.yaml")}}
    torch.save({"format": "pointgcn", "version": 1, "config": cfg,
                "state_dict": model.state_dict(), "meta": {}}, tmp_path / "old.pt")
    with pytest.raises(FormatError, match=r"old.pt: the checkpoint names its model.genotype "
                                          r"by a path \(.*g.yaml\) instead of embedding it"):
        open_model(tmp_path / "old.pt")
    rebuilt = open_model(tmp_path / "old.pt", overrides={"genotype": CELL.to_dict()}).module
    assert rebuilt.cfg["k"] == 4


SEG = {"data": {"dataset": "s3dis", "n_points": 64},
       "model": tiny_model(in_channels=9, n_classes=13)}


def _ckpt(path, cfg=SEG, **change):
    """A valid tiny checkpoint (segmentation by default), then `change` applied to its dict."""
    save_checkpoint(path, build_model(cfg).eval(), cfg)
    ckpt = torch.load(path, weights_only=True)
    for key, value in change.items():
        if value is None:
            ckpt.pop(key)
        else:
            ckpt[key] = value(ckpt) if callable(value) else value
    torch.save(ckpt, path)
    return path


def _poison(name, value):
    def change(ckpt):
        sd = dict(ckpt["state_dict"])
        sd[name] = sd[name].clone()
        sd[name].view(-1)[0] = value
        return sd
    return change


def test_non_finite_tensors_are_refused_by_name(tmp_path):
    bn = "backbone.0.conv.post.norm.running_var"
    _ckpt(tmp_path / "a.pt", state_dict=_poison(bn, float("nan")))
    with pytest.raises(FormatError, match=rf"a.pt: state_dict/{bn} holds NaN or Inf values"):
        open_model(tmp_path / "a.pt")
    _ckpt(tmp_path / "b.pt", state_dict=_poison("head.lin.weight", float("-inf")))
    with pytest.raises(FormatError, match="state_dict/head.lin.weight holds NaN or Inf"):
        read_checkpoint(tmp_path / "b.pt")
    # training state too: a resumed run would carry the NaN on
    _ckpt(tmp_path / "c.pt", train_state={"optimizer": {"state": {0: {
        "exp_avg": torch.tensor([0.0, float("nan")])}}}})
    with pytest.raises(FormatError, match="train_state/optimizer/state/0/exp_avg holds NaN"):
        read_checkpoint(tmp_path / "c.pt")


def test_non_finite_logits_are_an_error_in_every_runtime(tmp_path):
    """One check shared by the PyTorch and onnxruntime predictors."""
    import onnx
    from onnx import TensorProto, helper

    from pointgcn.engine.predictor import TorchPredictor
    from pointgcn.export.runtime import OnnxPredictor

    model = build_model(tiny_model(in_channels=3, n_classes=4)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1e30)                       # finite weights whose products overflow
    x = np.random.default_rng(0).random((1, 3, 32), dtype=np.float32)
    with pytest.raises(InputError, match="big gave NaN or Inf logits for this input"):
        TorchPredictor(model, name="big")(x)
    # features / 0: an ONNX graph whose logits are Inf (NaN where the feature is 0)
    graph = helper.make_graph(
        [helper.make_node("Div", ["features", "zero"], ["logits"])], "div0",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["B", 3, "N"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["B", 3, "N"])],
        [helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
              tmp_path / "div0.onnx")
    with pytest.raises(InputError, match="div0.onnx gave NaN or Inf logits"):
        OnnxPredictor(tmp_path / "div0.onnx")(x)


# ---- the attack corpus ------------------------------------------------------------------
def _corpus(folder, case):
    """(file, expected message part) of one crafted model file."""
    p = folder / f"{case}.pt"
    if case == "no_config":
        return _ckpt(p, config=None), "has no usable config"
    if case == "config_not_a_mapping":
        return _ckpt(p, config="model: 3"), "has no usable config"
    if case == "no_state_dict":
        return _ckpt(p, state_dict=None), "no state_dict of named tensors"
    if case == "bad_class_names":
        return _ckpt(p, meta={"class_names": ["a", "b"]}), "class_names a list of 13 names"
    if case == "nan_weights":
        return (_ckpt(p, state_dict=_poison("fusion.post.norm.running_mean", float("nan"))),
                "fusion.post.norm.running_mean holds NaN or Inf")
    if case == "huge_width":
        return (_ckpt(p, config=lambda c: {**c["config"], "model": {
            **c["config"]["model"], "channels": 300000}}),
            "model.channels must be at most 4096, got 300000")
    if case == "self_base":
        return (_ckpt(p, config=lambda c: {**c["config"], "model": {
            **c["config"]["model"], "base": "self.pt"}}), "unknown model keys: base")
    if case == "not_a_checkpoint":
        p.write_text("ply\nformat ascii 1.0\nend_header\n")
        return p, "not a readable checkpoint"
    if case == "a_list":
        torch.save([1, 2, 3], p)
        return p, "checkpoint is not a dict"
    if case == "truncated":
        data = _ckpt(p).read_bytes()
        p.write_bytes(data[:len(data) // 2])
        return p, "not a readable checkpoint"
    raise AssertionError(case)


CASES = ["no_config", "config_not_a_mapping", "no_state_dict", "bad_class_names",
         "nan_weights", "huge_width", "self_base", "not_a_checkpoint", "a_list", "truncated"]


def _exit_2_one_line(capsys, argv, msg, folder, before):
    assert main(argv) == 2, argv
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and msg in err[0], (argv, err)
    assert sorted(p.name for p in folder.iterdir()) == before, argv   # nothing written


@pytest.mark.parametrize("case", CASES)
def test_crafted_checkpoints_through_every_stage(tmp_path, capsys, case):
    ckpt, msg = _corpus(tmp_path, case)
    cloud = PointCloud(np.random.default_rng(0).random((200, 3), dtype=np.float32))
    write_ply(tmp_path / "in.ply", cloud)
    before = sorted(p.name for p in tmp_path.iterdir())
    out = str(tmp_path / "out")
    for argv in (["segment", str(tmp_path / "in.ply"), "--weights", str(ckpt), "--out",
                  out + ".ply", "--png", out + ".png"],
                 ["classify", str(tmp_path / "in.ply"), "--weights", str(ckpt), "--png",
                  out + ".png"],
                 ["export", str(ckpt), "--out", out + ".onnx", "--no-parity"],
                 ["eval", "--ckpt", str(ckpt), "--json", out + ".json", "--no-progress"]):
        _exit_2_one_line(capsys, argv, msg, tmp_path, before)


def test_crafted_configs_and_overflow_through_the_stages(tmp_path, capsys):
    """A config whose base is itself (eval's CONFIG, export's model spec, train), a bad
    float on the command line, and weights whose logits overflow (segment, classify)."""
    (tmp_path / "self.yaml").write_text("base: self.yaml\nmodel: {n_blocks: 2}\n")
    rng = np.random.default_rng(0)
    cloud = PointCloud(rng.random((200, 3), dtype=np.float32),
                       rng.random((200, 3), dtype=np.float32))  # colours: the room model's
    write_ply(tmp_path / "in.ply", cloud)
    def overflow(c):
        return {k: v * 1e30 if v.is_floating_point() else v for k, v in c["state_dict"].items()}

    big = _ckpt(tmp_path / "big.pt", state_dict=overflow)
    cls = _ckpt(tmp_path / "cls.pt", {"model": tiny_model(in_channels=3, n_classes=5,
                                                          task="classification")},
                state_dict=overflow)
    (tmp_path / "ok.yaml").write_text(yaml.safe_dump(shapes_config(tmp_path)))
    before = sorted(p.name for p in tmp_path.iterdir())
    out = str(tmp_path / "out")
    for argv, msg in (
            (["eval", str(tmp_path / "self.yaml"), "--ckpt", str(big), "--json",
              out + ".json"], "config base cycle"),
            (["export", str(tmp_path / "self.yaml"), "--out", out + ".onnx"],
             "config base cycle"),
            (["train", str(tmp_path / "self.yaml"), "--out", out], "config base cycle"),
            (["segment", str(tmp_path / "in.ply"), "--weights", str(tmp_path / "self.yaml"),
              "--out", out + ".ply"], "a config YAML has no trained weights"),
            (["train", str(tmp_path / "ok.yaml"), "train.lr=.nan", "--out", out],
             "train.lr must be a finite number > 0, got nan"),
            (["segment", str(tmp_path / "in.ply"), "--weights", str(big), "--out",
              out + ".ply"], "gave NaN or Inf logits"),
            (["classify", str(tmp_path / "in.ply"), "--weights", str(cls)],
             "gave NaN or Inf logits")):
        _exit_2_one_line(capsys, argv, msg, tmp_path, before)
