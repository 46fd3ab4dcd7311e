"""`pointgcn data synth|prepare|info`: the procedural sets load in the real loaders, prepare and
info report exact counts, and bad input ends with one line and exit code 2."""
import json

import h5py
import numpy as np
import pytest

from apps.cli import main
from conftest import tree_bytes
from pointgcn.data import S3DIS, ModelNet40, PartNetSemSeg


def run(capsys, *argv):
    code = main(["data", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def write_raw_room(root, area, room, objects):
    """objects: {file stem: n points}; lines `x y z r g b` as in the archive."""
    rng = np.random.default_rng(area)
    for stem, n in objects.items():
        path = root / f"Area_{area}" / room / "Annotations" / f"{stem}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        xyz = rng.random((n, 3)) * [1.8, 1.2, 2.5]
        path.write_text("".join(f"{x:.6f} {y:.6f} {z:.6f} 120.000000 64.000000 3.000000\n"
                                for x, y, z in xyz))


def test_synth_sets_load_in_the_real_loaders(tmp_path, capsys):
    from pointgcn.data.synthetic import SHAPE_CLASSES

    code, out, _ = run(capsys, "synth", "rooms", "--out", str(tmp_path / "r"), "--n", "2")
    assert code == 0 and "Stanford3dDataset_v1.2_Aligned_Version" in out
    test = S3DIS(tmp_path / "r", "test", 5, n_points=512)
    x, y = test[0]
    assert x.shape == (9, 512) and 0 <= int(y.min()) and int(y.max()) < 13
    assert run(capsys, "synth", "shapes", "--out", str(tmp_path / "s"), "--n", "2")[0] == 0
    shapes = ModelNet40(tmp_path / "s", "train", n_points=128)
    assert shapes.classes == tuple(SHAPE_CLASSES) and len(shapes) == len(SHAPE_CLASSES)
    assert shapes[0][0].shape == (3, 128)
    assert run(capsys, "synth", "parts", "--out", str(tmp_path / "p"), "--n", "3")[0] == 0
    parts = PartNetSemSeg(tmp_path / "p", "Chair", 1, "train", n_points=256)
    assert parts.num_classes == 6 and parts[0][0].shape == (3, 256)


def test_prepare_and_info_report_exact_counts(tmp_path, capsys):
    raw = tmp_path / "raw"
    write_raw_room(raw, 1, "office_1", {"wall_1": 300, "stairs_1": 150})
    write_raw_room(raw, 5, "WC_1", {"floor_1": 400, "chair_3": 120, "chair_4": 80})
    code, out, _ = run(capsys, "info", str(raw), "--json")
    info = json.loads(out)
    assert code == 0 and info["kind"] == "s3dis/raw"
    assert info["rooms_per_area"] == {"Area_1": 1, "Area_5": 1}
    assert info["objects_per_class"] == {"floor": 1, "wall": 1, "chair": 2, "clutter": 1}
    code, out, err = run(capsys, "prepare", "s3dis", "--src", str(raw), "--out",
                         str(tmp_path / "prep"), "--blocks")
    assert code == 0 and "wrote 2 rooms (1050 points)" in out and "rooms" in err  # tqdm bar
    info = json.loads(run(capsys, "info", str(tmp_path / "prep"), "--json")[1])
    assert info["kind"] == "s3dis/h5" and info["points_per_block"] == 4096
    assert set(info["blocks_per_area"]) == {"Area_1", "Area_5"}
    info = json.loads(run(capsys, "info", str(tmp_path / "prep" / "Area_5_WC_1.npy"),
                          "--json")[1])
    # x y z r g b label, headerless: the unnamed 7th column is a field, not labels
    assert info["points"] == 600 and info["colors"] and not info["labels"]
    assert info["fields"] == ["scalar"]
    np.testing.assert_allclose(info["bounds_min"], 0, atol=1e-6)  # PointNet's shifted rooms
    h5 = tmp_path / "prep" / "indoor3d_sem_seg_hdf5_data" / "ply_data_all_0.h5"
    info = json.loads(run(capsys, "info", str(h5), "--json")[1])
    assert info["datasets"]["data"]["shape"][1:] == [4096, 9]
    assert info["datasets"]["label"]["dtype"] == "uint8"
    code, out, _ = run(capsys, "info", str(raw))
    assert code == 0 and "rooms_per_area:" in out and "  Area_5: 1" in out


def test_info_counts_invalid_points_instead_of_failing(tmp_path, capsys):
    (tmp_path / "nan.xyz").write_text("0 0 0\nnan 1 1\n1 2 3\ninf 0 0\n")
    code, out, _ = run(capsys, "info", str(tmp_path / "nan.xyz"), "--json")
    info = json.loads(out)
    assert code == 0 and info["points"] == 2 and info["invalid_points"].startswith("2 with NaN")
    assert info["bounds_max"] == [1.0, 2.0, 3.0]


def test_info_on_modelnet_and_partnet_folders(tmp_path, capsys):
    folder = tmp_path / "modelnet40_ply_hdf5_2048"
    folder.mkdir()
    with h5py.File(folder / "ply_data_test0.h5", "w") as f:
        f["data"] = np.zeros((3, 2048, 3), np.float32)
        f["label"] = np.array([[0], [5], [5]], np.uint8)
    (folder / "test_files.txt").write_text("data/modelnet40_ply_hdf5_2048/ply_data_test0.h5\n")
    info = json.loads(run(capsys, "info", str(tmp_path), "--json")[1])
    assert info["kind"] == "modelnet/h5"
    assert info["splits"] == {"test": {"shapes": 3, "per_class": {"airplane": 1, "bottle": 2}}}
    task = tmp_path / "pn" / "sem_seg_h5" / "Bag-1"
    task.mkdir(parents=True)
    with h5py.File(task / "val-00.h5", "w") as f:
        f["data"] = np.zeros((2, 100, 3), np.float32)
        f["label_seg"] = np.zeros((2, 100), np.int64)
    (task / "val_files.txt").write_text("val-00.h5\n")
    info = json.loads(run(capsys, "info", str(tmp_path / "pn"), "--json")[1])
    assert info["tasks"] == {"Bag-1": {"classes": 4, "val": {"shapes": 2,
                                                             "points_per_shape": 100}}}


@pytest.mark.parametrize("argv,message", [
    (["info", "{tmp}/missing"], "no such file or folder"),
    (["info", "{tmp}/empty"], "not a recognised data set"),
    (["prepare", "s3dis", "--src", "{tmp}/empty", "--out", "{tmp}/out"], "not an S3DIS raw"),
    (["prepare", "modelnet40", "--src", "{tmp}/empty", "--out", "{tmp}/out"], "not a ModelNet"),
    (["prepare", "partnet", "--src", "{tmp}/empty", "--out", "{tmp}/out"], "not a PartNet"),
    (["synth", "rooms", "--out", "{tmp}/out", "--n", "0"], "--n must be ≥ 1 for rooms"),
    (["synth", "shapes", "--out", "{tmp}/out", "--n", "1"], "--n must be ≥ 2 for shapes"),
    (["synth", "parts", "--out", "{tmp}/out", "--n", "2"], "--n must be ≥ 3 for parts"),
    (["info", "{tmp}/bad.ply"], "bad.ply"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.ply").write_text("ply\nformat ascii 1.0\nelement vertex 3\n")
    code, out, err = run(capsys, *[a.format(tmp=tmp_path) for a in argv])
    assert code == 2 and err.startswith("error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*"))


def write_junk_or_keyless(path, junk):
    if junk:
        path.write_bytes(b"\x89HDF\r\n junk, not HDF5")
    else:
        with h5py.File(path, "w") as f:
            f["points"] = np.zeros((2, 16, 9), np.float32)  # neither 'data' nor 'label'


@pytest.mark.parametrize("layout, junk", [
    ("s3dis", True), ("s3dis", False), ("modelnet", True), ("modelnet", False),
    ("partnet", True), ("partnet", False), ("file", True),  # one h5 file: lists what it has
])
def test_info_on_broken_h5_is_one_line(tmp_path, capsys, layout, junk):
    """`data info` opens listed h5 files itself: a junk file or a missing dataset is exit 2 and
    one line naming the file, never an OSError/KeyError traceback."""
    if layout == "s3dis":
        bad = tmp_path / "ply_data_all_0.h5"
        (tmp_path / "all_files.txt").write_text("indoor3d_sem_seg_hdf5_data/ply_data_all_0.h5\n")
        (tmp_path / "room_filelist.txt").write_text("Area_1_a\nArea_1_a\n")
    elif layout == "modelnet":
        bad = tmp_path / "ply_data_train0.h5"
        (tmp_path / "train_files.txt").write_text("ply_data_train0.h5\n")
    elif layout == "partnet":
        (tmp_path / "Bag-1").mkdir()
        bad = tmp_path / "Bag-1" / "train-00.h5"
        (tmp_path / "Bag-1" / "train_files.txt").write_text("train-00.h5\n")
    else:
        bad = tmp_path / "x.h5"
    write_junk_or_keyless(bad, junk)
    target = bad if layout == "file" else tmp_path
    code, out, err = run(capsys, "info", str(target), "--json")
    assert code == 2 and err.startswith(f"error: {bad}: "), err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert ("not a readable HDF5 file" if junk else "missing HDF5 dataset") in err


@pytest.mark.parametrize("kind,inner", [
    ("rooms", "Stanford3dDataset_v1.2_Aligned_Version/Area_1/office_1/Annotations"),
    ("shapes", "ModelNet40/chair/train"), ("parts", "sem_seg_h5/Chair-1"),
])
@pytest.mark.parametrize("overwrite", [False, True])
def test_synth_never_touches_a_users_data_set(tmp_path, capsys, kind, inner, overwrite):
    """The target folders carry the names of the real downloads: one holding anything synth
    did not write is refused, --overwrite or not, and stays byte for byte as it was."""
    mine = tmp_path / inner / "marker.txt"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"my real data set\n")
    before = tree_bytes(tmp_path)
    code, out, err = run(capsys, "synth", kind, "--out", str(tmp_path), "--n", "3",
                         *(["--overwrite"] if overwrite else []))
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert tree_bytes(tmp_path) == before and mine.read_bytes() == b"my real data set\n"
    assert "nothing was changed" in err or "not overwritten" in err


def test_synth_overwrite_replaces_only_its_own_earlier_output(tmp_path, capsys):
    out, fresh = tmp_path / "out", tmp_path / "fresh"
    assert run(capsys, "synth", "parts", "--out", str(out), "--n", "3")[0] == 0
    root = out / "sem_seg_h5"
    marker = json.loads((root / ".pointgcn-synth.json").read_text())
    assert marker["kind"] == "parts" and marker["seed"] == 0 and marker["n_shapes"] == 3
    assert set(marker["files"]) == set(tree_bytes(root)) - {".pointgcn-synth.json"}
    code, _, err = run(capsys, "synth", "parts", "--out", str(out), "--n", "3", "--seed", "1")
    assert code == 2 and "--overwrite replaces this earlier synthetic set" in err
    assert run(capsys, "synth", "parts", "--out", str(out), "--n", "3", "--seed", "1",
               "--overwrite")[0] == 0
    assert run(capsys, "synth", "parts", "--out", str(fresh), "--n", "3", "--seed", "1")[0] == 0
    assert tree_bytes(root) == tree_bytes(fresh / "sem_seg_h5")  # as if written anew, nothing left over
    assert sorted(p.name for p in out.iterdir()) == ["sem_seg_h5"]  # no staging folders
    (root / "Chair-1" / "train-00.h5").write_bytes(b"edited by the user")
    before = tree_bytes(root)
    code, _, err = run(capsys, "synth", "parts", "--out", str(out), "--n", "3", "--overwrite")
    assert code == 2 and "Chair-1/train-00.h5, which `data synth` did not write" in err
    assert tree_bytes(root) == before
    code, _, err = run(capsys, "synth", "shapes", "--out", str(fresh), "--n", "2")
    assert code == 0  # another kind goes to its own folder beside
    (fresh / "ModelNet40" / ".pointgcn-synth.json").rename(fresh / "ModelNet40" / "x.json")
    code, _, err = run(capsys, "synth", "shapes", "--out", str(fresh), "--n", "2", "--overwrite")
    assert code == 2 and "not an earlier `data synth shapes` output" in err
