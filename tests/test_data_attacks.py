"""The attack corpus of the data sets: corrupt S3DIS rooms and ModelNet trees, written as real
files, go through `pointgcn train` (and `data prepare`). Each is either repaired and reported —
the same per-room lines and summary from both commands — and trained, or refused with exit 2
and one `error:` line naming the file (and line), leaving no run folder."""
import numpy as np
import pytest
import yaml
from conftest import deadline, rooms_config, shapes_config

from apps.cli import main
from pointgcn.data.build import build_datasets
from pointgcn.data.s3dis_raw import RAW_DIR_NAME

pytestmark = pytest.mark.usefixtures("one_thread")

OBJECTS = ("wall_1", "floor_1", "chair_1")


def write_rooms(root):
    """Three small rooms (Areas 1–3: two train, one validation) of 3 objects × 150 points."""
    rng = np.random.default_rng(0)
    for area in (1, 2, 3):
        for name in OBJECTS:
            path = root / RAW_DIR_NAME / f"Area_{area}" / "office_1" / "Annotations" / f"{name}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            xyz = rng.random((150, 3)) * [1.8, 1.2, 2.5]
            rgb = rng.integers(0, 256, (150, 3))
            path.write_text("".join(f"{x:.3f} {y:.3f} {z:.3f} {r} {g} {b}\n"
                                    for (x, y, z), (r, g, b) in zip(xyz, rgb)))
    return root / RAW_DIR_NAME / "Area_2" / "office_1" / "Annotations"


def train(capsys, tmp_path, cfg, *overrides):
    tmp_path.mkdir(exist_ok=True)
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    code = main(["train", str(cfg_path), *overrides, "--out", str(tmp_path / "run"),
                 "--no-progress"])
    out, err = capsys.readouterr()
    return code, out, err


def assert_refused(code, out, err, tmp_path, *fragments):
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and all(f in err for f in fragments), err
    assert not (tmp_path / "run").exists()


def append(path, text):
    path.write_bytes(path.read_bytes() + text)


# corruption → (what it does to Area_2/office_1/Annotations, the report phrase)
REPAIRED = {
    "nan row": (lambda d: append(d / "wall_1.txt", b"nan 0.5 0.5 10 10 10\n"),
                "1 NaN/Inf lines dropped"),
    "1e400": (lambda d: append(d / "wall_1.txt", b"1e400 0.5 0.5 10 10 10\n"),
              "1 NaN/Inf lines dropped"),
    "non-numeric token": (lambda d: append(d / "floor_1.txt", b"0.1 0.2 abc 10 20 30\n"),
                          "1 non-numeric lines dropped"),
    "truncated line": (lambda d: append(d / "chair_1.txt", b"0.1 0.2"),
                       "1 lines without exactly 6 values dropped"),
    "5 columns": (lambda d: append(d / "chair_1.txt", b"0.1 0.2 0.3 10 20\n"),
                  "1 lines without exactly 6 values dropped"),
    "colour 999": (lambda d: append(d / "wall_1.txt", b"0.1 0.2 0.3 999 0 0\n"),
                   "1 lines with colours outside 0–255 dropped"),
    "colour -5": (lambda d: append(d / "wall_1.txt", b"0.1 0.2 0.3 0 -5 0\n"),
                  "1 lines with colours outside 0–255 dropped"),
    "empty file": (lambda d: (d / "chair_2.txt").write_bytes(b""),
                   "1 empty annotation files skipped"),
    "NUL for a space": (lambda d: append(d / "wall_1.txt", b"0.1\x000.2 0.3 10 20 30\n"),
                        "1 corrupted bytes repaired"),
}


@pytest.mark.parametrize("case", sorted(REPAIRED))
def test_repairable_rooms_are_reported_alike_and_trained(tmp_path, capsys, case):
    corrupt, phrase = REPAIRED[case]
    corrupt(write_rooms(tmp_path))
    code, out, err = main(["data", "prepare", "s3dis", "--src", str(tmp_path), "--out",
                           str(tmp_path / "prep"), "--no-progress"]), *capsys.readouterr()
    assert code == 0, err
    expected = [f"  Area_2_office_1: {phrase}", f"data: 1 of 3 rooms repaired or reduced: {phrase}"]
    assert out.splitlines()[1:] == expected
    code, out, err = train(capsys, tmp_path, rooms_config(tmp_path, batch_size=2), "data.n_points=64")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[:2] == expected and (tmp_path / "run" / "checkpoints" / "last.pt").is_file()


def binary_file(d):
    (d / "clutter_1.txt").write_bytes(np.random.default_rng(1).bytes(4096))


def many_bad_lines(d):
    append(d / "wall_1.txt", b"0.1 0.2 0.3 10 20\n" * 101)


REFUSED = {
    "random-binary file": (binary_file, ["clutter_1.txt line ", "binary or not an S3DIS"]),
    "unknown class prefix": (lambda d: (d / "banana_1.txt").write_text("0 0 0 1 2 3\n"),
                             ["banana_1.txt: unknown class 'banana'"]),
    "too many bad lines": (many_bad_lines, ["wall_1.txt line 151: lines without exactly 6",
                                            "at most 100"]),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_unrepairable_rooms_are_refused_by_train(tmp_path, capsys, case):
    corrupt, fragments = REFUSED[case]
    corrupt(write_rooms(tmp_path))
    code, out, err = train(capsys, tmp_path, rooms_config(tmp_path, batch_size=2), "data.n_points=64")
    assert_refused(code, out, err, tmp_path, "Area_2/office_1/Annotations/", *fragments)


def test_far_outlier_trains_and_prepares_blocks_quickly(tmp_path, capsys):
    """One point 100 km away used to make room_to_blocks walk the empty grid between (forever)."""
    append(write_rooms(tmp_path) / "wall_1.txt", b"100000.0 100000.0 1.0 10 20 30\n")
    with deadline(60):
        code, _, err = train(capsys, tmp_path, rooms_config(tmp_path, batch_size=2), "data.n_points=64")
        assert code == 0, err
        assert main(["data", "prepare", "s3dis", "--src", str(tmp_path), "--out",
                     str(tmp_path / "prep"), "--blocks", "--no-progress"]) == 0


CUBE = ("OFF\n8 6 0\n" + "".join(f"{x} {y} {z}\n" for x in (0, 1) for y in (0, 1) for z in (0, 1))
        + "4 0 1 3 2\n4 4 6 7 5\n4 0 4 5 1\n4 2 3 7 6\n4 0 2 6 4\n4 1 5 7 3\n")


def write_shapes(root, splits=("train",) * 4 + ("test",), classes=("bed", "cup", "lamp")):
    for cls in classes:
        for k, split in enumerate(splits):
            path = root / "ModelNet40" / cls / split / f"{cls}_{k + 1:04d}.off"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(CUBE.replace("1 1 1", f"1 1 {1 + k}"))
    return root / "ModelNet40"


def test_class_without_training_shapes_is_refused(tmp_path, capsys):
    root = write_shapes(tmp_path)
    for path in (root / "cup" / "train").iterdir():
        path.unlink()
    (root / "cup" / "train").rmdir()
    code, out, err = train(capsys, tmp_path, shapes_config(tmp_path))
    assert_refused(code, out, err, tmp_path, "ModelNet40/cup: no train shapes")


def test_test_split_in_some_classes_only_is_refused(tmp_path, capsys):
    root = write_shapes(tmp_path)
    (root / "lamp" / "test" / "lamp_0005.off").unlink()
    code, out, err = train(capsys, tmp_path, shapes_config(tmp_path))
    assert_refused(code, out, err, tmp_path, "ModelNet40/lamp: no test shapes (lamp/test/)")


def test_train_only_tree_trains_and_says_so(tmp_path, capsys):
    """A data set whose test split is kept elsewhere (ModelNet10 in shared/data): validation is
    carved from train, and train says in one line that there is no test split."""
    write_shapes(tmp_path, splits=("train",) * 4)
    code, out, err = train(capsys, tmp_path, shapes_config(tmp_path, epochs=1))
    assert code == 0, err
    assert "no test split (a train-only data set)" in out
    assert main(["eval", str(tmp_path / "run" / "config.yaml"), "--ckpt",
                 str(tmp_path / "run" / "checkpoints" / "best.pt")]) == 2
    assert "no test split" in capsys.readouterr().err


def test_nan_mesh_names_the_switch_of_the_command_that_refused_it(tmp_path, capsys):
    root = write_shapes(tmp_path)
    bad = root / "lamp" / "train" / "lamp_0002.off"
    bad.write_text(bad.read_text().replace("0 0 1\n", "nan 0 1\n", 1))
    code, out, err = train(capsys, tmp_path, shapes_config(tmp_path, epochs=1))
    assert_refused(code, out, err, tmp_path, "lamp_0002.off: 4 faces have NaN/Inf",
                   "data.drop_invalid=true drops them")
    assert "--drop-invalid" not in err
    code, out, err = train(capsys, tmp_path, shapes_config(tmp_path, epochs=1),
                           "data.drop_invalid=true")
    assert code == 0, err
    expected = ["  lamp_0002: 4 faces with NaN/Inf corners dropped",
                "data: 1 of 12 shapes repaired or reduced: 4 faces with NaN/Inf corners dropped"]
    assert out.splitlines()[:2] == expected
    code, out, err = train(capsys, tmp_path / "again", shapes_config(tmp_path, epochs=1),
                           "data.drop_invalid=true")  # from the cache: reported again
    assert code == 0 and out.splitlines()[:2] == expected
    prep = ["data", "prepare", "modelnet40", "--src", str(root), "--no-progress", "--out"]
    assert main(prep + [str(tmp_path / "p1")]) == 2
    err = capsys.readouterr().err
    assert "--drop-invalid drops them" in err and "data.drop_invalid" not in err
    assert main(prep + [str(tmp_path / "p2"), "--drop-invalid"]) == 0
    assert capsys.readouterr().out.splitlines()[1] == expected[0]


def test_drop_invalid_must_be_a_boolean(tmp_path, capsys):
    write_shapes(tmp_path)
    code, out, err = train(capsys, tmp_path, shapes_config(tmp_path), "data.drop_invalid=maybe")
    assert_refused(code, out, err, tmp_path, "data.drop_invalid must be true or false")


def test_class_of_the_list_without_training_shapes_is_refused(tmp_path):
    """Layouts with a class list (here a names file) need training shapes for every class."""
    root = write_shapes(tmp_path)
    (root / "shape_names.txt").write_text("bed\ncup\nlamp\nsofa\n")
    cfg = shapes_config(tmp_path)
    with pytest.raises(Exception, match="class 'sofa' has no training shapes") as e:
        build_datasets(cfg)
    assert type(e.value).__name__ == "FormatError"
