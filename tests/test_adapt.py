"""`pointgcn adapt`: a few labelled points of a scan the model has not seen the like of make it
better on the rest; a new class list; every refusal one line, nothing written."""
import dataclasses

import numpy as np
import pytest
import torch

from apps.cli import main
from pointgcn.data.s3dis_raw import list_raw_rooms, read_raw_room
from pointgcn.data.synthetic import write_rooms
from pointgcn.engine.adapt import FeatureTap, fit_layer, last_layer
from pointgcn.io import PointCloud, read_points, write_ply
from pointgcn.models.checkpoint import read_checkpoint


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    """A shifted-style synthetic room (3 × 3 m crop) with 3% of its points labelled."""
    d = tmp_path_factory.mktemp("adapt")
    write_rooms(d, n_rooms=1, seed=101, style="shifted")
    area, folder = list_raw_rooms(d / "Stanford3dDataset_v1.2_Aligned_Version")[0]
    rows = read_raw_room(folder, area=area).as_rows(shift=True)
    rows = rows[(rows[:, 0] < 3) & (rows[:, 1] < 3)]
    truth = rows[:, 6].astype(np.int64)
    labelled = np.random.default_rng(0).random(len(rows)) < 0.03
    cloud = PointCloud(rows[:, :3].astype(np.float64), (rows[:, 3:6] / 255).astype(np.float32),
                       labels=np.where(labelled, truth, -1))
    write_ply(d / "scan.ply", cloud)
    return d, cloud, truth, labelled


def miou(pred, truth, mask):
    from pointgcn.engine.metrics import ConfusionMatrix
    return ConfusionMatrix(13).update(pred[mask], truth[mask]).miou()


def test_adapted_model_is_better_on_the_unlabelled_rest(scan, tmp_path, capsys):
    d, cloud, truth, labelled = scan
    assert main(["adapt", "--weights", "synth-rooms", "--labels", str(d / "scan.ply"),
                 "--out", str(tmp_path / "mine.pt"), "--no-progress", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "held-out before:" in out and "held-out after:" in out
    preds = {}
    for name, weights in (("before", "synth-rooms"), ("after", str(tmp_path / "mine.pt"))):
        assert main(["segment", str(d / "scan.ply"), "--weights", weights, "--out",
                     str(tmp_path / f"{name}.ply")]) == 0
        preds[name] = read_points(tmp_path / f"{name}.ply").fields["pred"]
    capsys.readouterr()
    rest = ~labelled
    before, after = miou(preds["before"], truth, rest), miou(preds["after"], truth, rest)
    assert after > before + 0.02, (before, after)
    ckpt = read_checkpoint(tmp_path / "mine.pt")
    assert ckpt["meta"]["adapted"]["metrics"]["labelled"] == int(labelled.sum())
    assert ckpt["meta"]["adapted"]["metrics"]["backbone_device"]["type"] == "cpu"
    assert "conventions" in ckpt["meta"] and (tmp_path / "mine.md").is_file()
    # a temperature fitted on the held-out labels, served by the predictor
    from pointgcn.export.serve import open_model
    t, cal = ckpt["meta"]["temperature"], ckpt["meta"]["calibration"]
    assert t > 0 and cal["nll_after"] <= cal["nll_before"] + 1e-12
    assert cal["points"] == ckpt["meta"]["adapted"]["metrics"]["after"]["points"]
    assert open_model(tmp_path / "mine.pt").predictor().temperature == t
    assert f"calibration: temperature {t:.3f}" in out


def test_new_classes_from_a_second_labels_file(scan, tmp_path, capsys):
    """Three user classes (structure / furniture / other), labels in a separate file of
    picked points; the checkpoint predicts those three."""
    d, cloud, truth, labelled = scan
    group = np.select([truth <= 2, (truth >= 7) & (truth <= 10)], [0, 1], 2)
    picked = dataclasses.replace(cloud.subset(np.flatnonzero(labelled)),
                                 labels=group[labelled])
    write_ply(tmp_path / "picked.ply", picked)
    (tmp_path / "names.txt").write_text("structure\nfurniture\nother\n")
    assert main(["adapt", "--weights", "synth-rooms", "--labels", str(tmp_path / "picked.ply"),
                 "--scan", str(d / "scan.ply"), "--classes", str(tmp_path / "names.txt"),
                 "--out", str(tmp_path / "three.pt"), "--no-progress"]) == 0
    assert "held-out before" not in capsys.readouterr().out  # other classes: nothing to compare
    assert main(["segment", str(d / "scan.ply"), "--weights", str(tmp_path / "three.pt"),
                 "--out", str(tmp_path / "o.ply")]) == 0
    assert "structure" in capsys.readouterr().out
    pred = read_points(tmp_path / "o.ply").fields["pred"]
    assert set(np.unique(pred)) <= {0, 1, 2} and (pred == group)[~labelled].mean() > 0.6


@pytest.mark.parametrize("case, message", [
    ("too few", "adaptation needs at least 50"),
    ("class without examples", "classes without enough labelled examples"),
    ("no labels", "no label field"),
    ("elsewhere", "from any point of"),
    ("classification model", "re-heads segmentation models"),
    ("asprs codes", "ASPRS class codes, not the model's classes"),
    ("asprs codes named", "is beyond the 2 classes"),
    ("held-out label beyond the classes", "label 13 is beyond the 13 classes"),
])
def test_refusals_are_one_line_and_write_nothing(scan, tmp_path, capsys, case, message):
    d, cloud, truth, labelled = scan
    args = ["--weights", "synth-rooms", "--labels", str(d / "scan.ply")]
    if case == "too few":
        few = np.where(np.arange(len(cloud)) < 20, truth, -1)
        write_ply(tmp_path / "few.ply", dataclasses.replace(cloud, labels=few))
        args[3] = str(tmp_path / "few.ply")
    elif case == "class without examples":
        (tmp_path / "names.txt").write_text("\n".join(f"c{i}" for i in range(14)) + "\n")
        args += ["--classes", str(tmp_path / "names.txt")]
    elif case == "no labels":
        write_ply(tmp_path / "bare.ply", dataclasses.replace(cloud, labels=None))
        args[3] = str(tmp_path / "bare.ply")
    elif case == "elsewhere":
        moved = dataclasses.replace(cloud, points=cloud.points + 5.0)
        write_ply(tmp_path / "moved.ply", moved)
        args[3] = str(tmp_path / "moved.ply")
        args += ["--scan", str(d / "scan.ply")]
    elif case.startswith("asprs codes"):  # a LAS file's classification: ASPRS, not ours
        args[3] = str(_las(tmp_path / "scan.las", cloud, truth))
        if case.endswith("named"):  # taken when named, then checked like any labels
            (tmp_path / "names.txt").write_text("a\nb\n")
            args += ["--label-field", "classification", "--classes", str(tmp_path / "names.txt")]
    elif case.startswith("held-out"):  # a label out of range among the held-out points only
        from pointgcn.engine.adapt import split_labels
        bad = cloud.labels.copy()
        bad[split_labels(bad, 0.2, 0)[1][0]] = 13
        write_ply(tmp_path / "bad.ply", dataclasses.replace(cloud, labels=bad))
        args[3] = str(tmp_path / "bad.ply")
    else:
        args[1] = "synth-shapes"
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["adapt", *args, "--out", str(tmp_path / "x.pt"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def _las(path, cloud, codes):
    """`cloud` as a LAS file whose classification holds `codes`."""
    import laspy

    las = laspy.LasData(laspy.LasHeader(point_format=3, version="1.2"))
    las.header.scales = [0.001] * 3
    las.x, las.y, las.z = cloud.points.T
    las.red, las.green, las.blue = (cloud.colors.T * 65535).astype(np.uint16)
    las.classification = codes.astype(np.uint8)
    las.write(str(path))
    return path


def test_feature_tap_and_fitted_layer_reproduce_the_model():
    """The tapped features through the model's own last layer give the model's logits, and
    fitting starts from that layer (zero steps: unchanged)."""
    from conftest import tiny_model
    from pointgcn.models import build_model

    model = build_model({"model": tiny_model(in_channels=9, n_classes=13)}).eval()
    x = torch.randn(2, 9, 64)
    feats = FeatureTap(model)(x.numpy())
    with torch.no_grad():
        want = model(x).numpy()
        got = last_layer(model).lin(torch.from_numpy(feats).transpose(1, 2)).transpose(1, 2)
    np.testing.assert_allclose(got.numpy(), want, atol=1e-5)
    same = fit_layer(feats.transpose(0, 2, 1).reshape(-1, feats.shape[1]),
                     np.zeros(128, np.int64), 13, last_layer(model).lin, steps=0)
    torch.testing.assert_close(same.weight, last_layer(model).lin.weight)
