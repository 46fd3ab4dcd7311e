"""segment / classify / eval end to end on files of every reader format, and bad input."""
import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh
from conftest import tiny_model

from apps.cli import main
from pointgcn.io import PointCloud, read_points, write_npy, write_npz, write_ply
from pointgcn.models import build_model, save_checkpoint


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    d = tmp_path_factory.mktemp("w")
    seg_cfg = {"data": {"dataset": "s3dis", "n_points": 128, "block": 1.0, "stride": 0.5},
               "model": tiny_model(in_channels=9, n_classes=13)}
    cls_cfg = {"data": {"dataset": "modelnet40", "n_points": 64},
               "model": tiny_model(in_channels=3, n_classes=5, task="classification")}
    names = ["a", "b", "c", "d", "e"]
    save_checkpoint(d / "seg.pt", build_model(seg_cfg).eval(), seg_cfg)
    save_checkpoint(d / "cls.pt", build_model(cls_cfg).eval(), cls_cfg,
                    meta={"class_names": names})
    return d


def room_cloud(n=3000, seed=0, labels=True):
    rng = np.random.default_rng(seed)
    pts = (rng.random((n, 3)) * [3.0, 2.0, 2.5]).astype(np.float32)
    col = rng.random((n, 3)).astype(np.float32)
    lab = rng.integers(0, 13, n) if labels else None
    return PointCloud(pts, col, labels=lab)


def write_formats(folder, cloud):
    """The same cloud in every cloud format the readers take."""
    files = []
    p = folder / "c_bin.ply"; write_ply(p, cloud); files.append(p)
    p = folder / "c_ascii.ply"; write_ply(p, cloud, binary=False); files.append(p)
    p = folder / "c.npy"; write_npy(p, cloud); files.append(p)
    p = folder / "c.npz"; write_npz(p, cloud); files.append(p)
    rgb = np.round(cloud.colors * 255).astype(int)
    rows = [f"{x:.6f} {y:.6f} {z:.6f} {r} {g} {b}" for (x, y, z), (r, g, b) in zip(cloud.points, rgb)]
    p = folder / "c.xyz"; p.write_text("\n".join(f"{r.split()[0]} {r.split()[1]} {r.split()[2]}" for r in rows) + "\n"); files.append(p)
    p = folder / "c.txt"; p.write_text("\n".join(rows) + "\n"); files.append(p)
    p = folder / "c.csv"; p.write_text("x,y,z,r,g,b\n" + "\n".join(r.replace(" ", ",") for r in rows) + "\n"); files.append(p)
    p = folder / "c.pcd"
    header = (f"# .PCD v0.7\nVERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\n"
              f"WIDTH {len(cloud)}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {len(cloud)}\nDATA ascii\n")
    p.write_text(header + "\n".join(" ".join(f"{v:.6f}" for v in q) for q in cloud.points) + "\n")
    files.append(p)
    return files


def test_segment_every_format(weights, tmp_path, capsys):
    cloud = room_cloud()
    for src in write_formats(tmp_path, cloud):
        out = tmp_path / f"pred_{src.suffix[1:]}_{src.stem}.ply"
        grey = ["--no-harmonise"] if src.suffix in (".xyz", ".pcd") else []  # colourless files
        assert main(["segment", str(src), "--weights", str(weights / "seg.pt"),
                     "--out", str(out), *grey]) == 0, src
        got = read_points(out)
        assert len(got) == len(cloud)
        assert np.allclose(got.points, cloud.points, atol=1e-5)      # every original point, in order
        pred = got.fields["pred"]
        assert pred.min() >= 0 and pred.max() < 13
        text = capsys.readouterr().out
        assert f"{len(cloud)} points" in text
        assert ("rgb channels get mid grey" in text) == (src.suffix in (".xyz", ".pcd"))
    # ground truth in the file → accuracy against it is printed
    assert "against the file's labels" in _run_capture(capsys, ["segment", str(tmp_path / "c_bin.ply"),
                                                                "--weights", str(weights / "seg.pt"),
                                                                "--out", str(tmp_path / "g.ply")])


def _run_capture(capsys, argv):
    assert main(argv) == 0
    return capsys.readouterr().out


def test_segment_object_parts(weights, tmp_path, capsys):
    cfg = {"data": {"dataset": "partnet", "n_points": 64},
           "model": tiny_model(in_channels=3, n_classes=4, task="part_segmentation")}
    save_checkpoint(tmp_path / "p.pt", build_model(cfg).eval(), cfg,
                    meta={"class_names": ["other", "seat", "back", "legs"]})
    cloud = room_cloud(150)
    cloud.labels = cloud.labels % 4
    write_ply(tmp_path / "chair.ply", cloud)
    assert main(["segment", str(tmp_path / "chair.ply"), "--weights", str(tmp_path / "p.pt"),
                 "--out", str(tmp_path / "o.ply")]) == 0
    pred = read_points(tmp_path / "o.ply").fields["pred"]
    assert len(pred) == 150 and pred.min() >= 1 and pred.max() <= 3   # "other" never predicted
    assert "part mIoU" in capsys.readouterr().out


def test_classify_clouds_and_meshes(weights, tmp_path, capsys):
    files = write_formats(tmp_path, room_cloud(500, labels=False))
    box = trimesh.creation.box((1, 2, 3))
    for ext in ("off", "obj", "stl"):
        p = tmp_path / f"m.{ext}"
        box.export(p)
        files.append(p)
    for src in files:
        assert main(["classify", str(src), "--weights", str(weights / "cls.pt"), "--json",
                     "--top", "3"]) == 0, src
        [row] = json.loads(capsys.readouterr().out)
        ranking = row["ranking"]
        probs = [r["probability"] for r in ranking]
        assert len(ranking) == 3 and probs == sorted(probs, reverse=True)
        assert {r["class"] for r in ranking} <= set("abcde")
    main(["classify", str(files[0]), "--weights", str(weights / "cls.pt"), "--top", "5", "--json"])
    assert sum(r["probability"] for r in json.loads(capsys.readouterr().out)[0]["ranking"]) == \
        pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("case", ["nan", "empty", "unknown_ext", "missing", "wrong_task",
                                  "bad_out", "truncated_ply", "unwritable_png"])
def test_bad_input_exit_2_one_line_no_output(weights, tmp_path, capsys, case):
    cloud = room_cloud(200)
    src, weight, out = tmp_path / "in.ply", weights / "seg.pt", tmp_path / "out.ply"
    if case == "nan":
        cloud.points[5, 1] = np.nan
        write_ply(src, cloud)
    elif case == "empty":
        src = tmp_path / "in.xyz"
        src.write_text("")
    elif case == "unknown_ext":
        src = tmp_path / "in.foo"
        src.write_text("1 2 3\n")
    elif case == "missing":
        src = tmp_path / "nope.ply"
    elif case == "wrong_task":
        write_ply(src, cloud)
        weight = weights / "cls.pt"
    elif case == "bad_out":
        write_ply(src, cloud)
        out = tmp_path / "out.xyz"  # not a format segment writes
    elif case == "truncated_ply":
        write_ply(src, cloud)
        src.write_bytes(src.read_bytes()[:-100])
    extra = []
    if case == "unwritable_png":
        write_ply(src, cloud)
        (tmp_path / "afile").write_text("x")
        extra = ["--png", str(tmp_path / "afile" / "p.png")]  # parent is a file
    code = main(["segment", str(src), "--weights", str(weight), "--out", str(out), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: ")
    assert not out.exists()
    assert list(tmp_path.glob("*.tmp*")) == [] and list(tmp_path.glob(".*")) == []


def test_segment_scores_only_labels_it_can(weights, tmp_path, capsys):
    """-1 = unlabelled (ignored, counted); labels beyond the classes: prediction, no metrics."""
    from apps.segment import _score

    cloud = room_cloud(400)
    cloud.labels[:100] = -1
    write_ply(tmp_path / "neg.ply", cloud)
    assert main(["segment", str(tmp_path / "neg.ply"), "--weights", str(weights / "seg.pt"),
                 "--out", str(tmp_path / "neg_out.ply")]) == 0
    assert "(100 unlabelled points ignored)" in capsys.readouterr().out
    cloud.labels = np.arange(400) % 20
    write_ply(tmp_path / "other.ply", cloud)
    assert main(["segment", str(tmp_path / "other.ply"), "--weights", str(weights / "seg.pt"),
                 "--out", str(tmp_path / "other_out.ply")]) == 0
    out = capsys.readouterr().out
    assert "another label set, no metrics" in out and "OA" not in out
    assert (tmp_path / "other_out.ply").is_file()
    # the numbers: OA over labelled points only
    pred, labels = np.array([0, 1, 1, 2]), np.array([0, 1, -1, 0])
    assert "OA 0.6667" in _score(pred, labels, "segmentation", list("abc"))


def test_outputs_never_replace_inputs(weights, tmp_path, capsys):
    """--out/--png naming the input (or each other) or the wrong kind of file: exit 2, the
    files untouched."""
    src = tmp_path / "in.ply"
    write_ply(src, room_cloud(200))
    before = src.read_bytes()
    seg = ["segment", str(src), "--weights", str(weights / "seg.pt")]
    for argv, msg in (
            (seg + ["--out", str(src)], "it would be overwritten"),
            (seg + ["--out", str(tmp_path / "o.ply"), "--png", str(src)], "must name a .png"),
            (seg + ["--out", str(tmp_path / "o.ply"), "--png", str(tmp_path / "dir/")],
             "must name a .png"),
            (["viz", str(src), "--png", str(src)], "must name a .png"),
            (["classify", str(src), "--weights", str(weights / "cls.pt"), "--png",
              str(tmp_path / "p.txt")], "must name a .png"),
            (["eval", str(src), "--ckpt", str(weights / "seg.pt"), "--json", str(src)],
             "must name a .json")):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and msg in err[0], (argv, err)
    assert src.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["in.ply"]


def test_segment_georeferenced_cloudcompare_csv(weights, tmp_path, capsys):
    """UTM coordinates come back to the output exactly; odd field names are renamed, not fatal."""
    rng = np.random.default_rng(0)
    xyz = np.round(rng.random((500, 3)) * [3.0, 2.0, 2.5] + [500000.0, 4000000.0, 90.0], 3)
    rows = [f"{x:.3f},{y:.3f},{z:.3f},10,20,30,{i / 7:.4f}" for i, (x, y, z) in enumerate(xyz)]
    (tmp_path / "scan.csv").write_text("//X,Y,Z,R,G,B,Scalar field\n" + "\n".join(rows) + "\n")
    assert main(["segment", str(tmp_path / "scan.csv"), "--weights", str(weights / "seg.pt"),
                 "--out", str(tmp_path / "o.ply")]) == 0
    assert "'Scalar field' written as 'Scalar_field'" in capsys.readouterr().out
    back = read_points(tmp_path / "o.ply")
    np.testing.assert_allclose(back.absolute_points(), xyz, atol=1e-4)
    assert "Scalar_field" in back.fields and "pred" in back.fields
    assert main(["data", "info", str(tmp_path / "scan.csv"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["local_origin"] == [500000.0, 4000000.0, 90.0]
    assert info["bounds_min"] == [round(float(v), 6) for v in xyz.min(0)]


def test_drop_invalid_keeps_the_rest(weights, tmp_path, capsys):
    cloud = room_cloud(300)
    cloud.points[[3, 7], 0] = np.inf
    write_ply(tmp_path / "in.ply", cloud)
    assert main(["segment", str(tmp_path / "in.ply"), "--weights", str(weights / "seg.pt"),
                 "--out", str(tmp_path / "o.ply")]) == 2  # the library's drop_invalid=True …
    assert "2 points have NaN/Inf coordinates; pass --drop-invalid to drop them" in \
        capsys.readouterr().err  # … is said as the stage's flag
    assert main(["segment", str(tmp_path / "in.ply"), "--weights", str(weights / "seg.pt"),
                 "--out", str(tmp_path / "o.ply"), "--drop-invalid"]) == 0
    assert "dropped 2 points" in capsys.readouterr().out
    assert len(read_points(tmp_path / "o.ply")) == 298


def test_real_process_exit_code(weights, tmp_path):
    out = subprocess.run([sys.executable, "-m", "apps.cli", "classify", str(tmp_path / "x.ply"),
                          "--weights", str(weights / "cls.pt")], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [f"error: {tmp_path / 'x.ply'}: no such file"]


def test_eval_rooms_full_resolution_and_per_block(synth_root, weights, tmp_path, capsys):
    cfg = {"data": {"dataset": "s3dis", "root": str(synth_root / "Stanford3dDataset_v1.2_Aligned_Version"),
                    "n_points": 128, "block": 2.0, "stride": 2.0}}
    cfg_path = tmp_path / "e.yaml"
    cfg_path.write_text(json.dumps(cfg))
    assert main(["eval", str(cfg_path), "--ckpt", str(weights / "seg.pt"), "--json",
                 str(tmp_path / "m.json"), "--no-progress"]) == 0
    printed = capsys.readouterr().out  # trained on 1 m blocks (stride 0.5), evaluated on 2 m
    assert "note: data.block is 2.0 here but the model was trained with 1.0" in printed
    assert "note: data.n_points" not in printed
    m = json.loads((tmp_path / "m.json").read_text())
    rows = sum(len(np.loadtxt(f)) for f in (synth_root / "Stanford3dDataset_v1.2_Aligned_Version"
                                             / "Area_5").glob("*/*.txt"))
    assert m["full_resolution"]["points"] == rows              # every point of every room
    assert m["per_block"]["points"] % 128 == 0 and "protocol" in m["per_block"]


def test_classify_within_budget(weights, tmp_path, capsys, monkeypatch):
    from pointgcn.models.weights import ship_checkpoint

    folder = tmp_path / "shipped"
    folder.mkdir()
    card = {"task": "classification", "data": "tiny", "command": "x", "metrics": {},
            "accuracy": {"metric": "oa", "value": 0.5, "data": "t"}}
    ship_checkpoint(weights / "cls.pt", "tiny-cls", card, folder)
    monkeypatch.setenv("POINTGCN_WEIGHTS", str(folder))
    write_ply(tmp_path / "s.ply", room_cloud(300, labels=False))
    assert main(["classify", str(tmp_path / "s.ply"), "--budget-ms", "10000", "--points", "64",
                 "--runtime", "torch", "--top", "1"]) == 0
    assert "picked tiny-cls" in capsys.readouterr().err  # a note: stdout holds results only
    assert main(["classify", str(tmp_path / "s.ply"), "--budget-ms", "0.0001", "--points", "64",
                 "--runtime", "torch"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no candidate meets" in err[0]


def test_classify_many_files_folders_and_globs_one_model_load(weights, tmp_path, capsys,
                                                              monkeypatch):
    """Rows per file, CSV and JSON tables; a bad file is an error row, the others still
    classified, exit 2; the model is loaded once."""
    import csv
    import io

    import apps.source_args as source_args

    shapes = tmp_path / "shapes"
    for i in range(3):
        write_ply(shapes / "a" / f"s{i}.ply", room_cloud(100 + i, seed=i, labels=False))
    trimesh.creation.box((1, 2, 3)).export(shapes / "b.off")
    (shapes / "notes.md").parent.mkdir(exist_ok=True)
    (shapes / "notes.md").write_text("not a shape")
    loads = []
    real = source_args.predictor_from_args
    monkeypatch.setattr(source_args, "predictor_from_args",
                        lambda *a, **k: loads.append(1) or real(*a, **k))
    cls = ["--weights", str(weights / "cls.pt"), "--top", "2"]
    assert main(["classify", str(shapes), *cls, "--csv"]) == 0
    table = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert table[0] == ["file", "class_1", "probability_1", "class_2", "probability_2",
                        "prediction", "confidence", "entropy"]
    assert [Path(r[0]).name for r in table[1:]] == ["s0.ply", "s1.ply", "s2.ply", "b.off"]
    assert all(r[1] in "abcde" and 0 < float(r[2]) <= 1 for r in table[1:]) and loads == [1]
    assert main(["classify", str(shapes / "a" / "*.ply"), str(shapes / "b.off"), *cls,
                 "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [Path(r["input"]).name for r in rows] == ["s0.ply", "s1.ply", "s2.ply", "b.off"]
    (shapes / "a" / "s1.ply").write_bytes(b"ply\nformat binary_little_endian 1.0\n")
    assert main(["classify", str(shapes), *cls]) == 2
    out, err = capsys.readouterr()
    assert len(out.strip().splitlines()) == 3 and "s1.ply" not in out
    assert "s1.ply" in err and "1 of 4 files could not be classified" in err
    (shapes / "a" / "s1.ply").write_text("ply\nformat ascii 1.0\nelement vertex 2\nproperty "
                                         "float x\nproperty float y\nproperty float z\n"
                                         "end_header\nnan 0 0\n1 0 0\n")
    assert main(["classify", str(shapes), *cls]) == 2  # a file's error in the stage's words
    assert "1 points have NaN/Inf coordinates; pass --drop-invalid" in capsys.readouterr().err
    assert main(["classify", str(shapes / "none" / "*.ply"), *cls]) == 2
    assert "no file matches" in capsys.readouterr().err


def test_segment_and_classify_use_the_default_shipped_model(weights, tmp_path, capsys,
                                                            monkeypatch):
    from pointgcn.models.weights import ship_checkpoint

    folder = tmp_path / "shipped"
    folder.mkdir()
    card = {"task": "classification", "data": "tiny", "command": "x", "metrics": {},
            "accuracy": {"metric": "oa", "value": 0.5, "data": "t"}}
    ship_checkpoint(weights / "cls.pt", "first-cls", card, folder)
    ship_checkpoint(weights / "cls.pt", "best-cls", {**card, "default": True}, folder)
    monkeypatch.setenv("POINTGCN_WEIGHTS", str(folder))
    write_ply(tmp_path / "s.ply", room_cloud(300, labels=False))
    assert main(["classify", str(tmp_path / "s.ply")]) == 0
    assert "using the shipped model best-cls (the default for classification" in \
        capsys.readouterr().err
    for table in ("--csv", "--json"):  # the note stays off stdout: the table can be piped
        assert main(["classify", str(tmp_path / "s.ply"), table]) == 0
        out, err = capsys.readouterr()
        assert "using the shipped model best-cls" in err
        if table == "--csv":
            rows = list(csv.reader(io.StringIO(out)))
            assert rows[0][:2] == ["file", "class_1"] and len(rows) == 2, out
        else:
            assert json.loads(out)[0]["ranking"][0]["class"], out
    assert main(["segment", str(tmp_path / "s.ply"), "--out", str(tmp_path / "o.ply")]) == 2
    assert "no shipped model for segmentation" in capsys.readouterr().err
