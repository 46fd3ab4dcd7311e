"""Synthetic part shapes: exact PartNet sem_seg_h5 layout, labels, determinism, difficulty."""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import tree_bytes
from pointgcn.data.classes import partnet_num_classes
from pointgcn.data.synthetic import PART_NAMES, write_parts
from pointgcn.data.synthetic import parts as parts_mod
from pointgcn.data.synthetic.common import MARKER
from pointgcn.errors import InputError

SPLITS = ("train", "val", "test")


def load(folder: Path, split: str):
    """Read a split the way published PartNet readers do: via `<split>_files.txt`."""
    lines = (folder / f"{split}_files.txt").read_text().splitlines()
    data, labels = [], []
    for line in lines:
        with h5py.File(folder / line, "r") as f:
            data.append(f["data"][:])
            labels.append(f["label_seg"][:])
    return np.concatenate(data), np.concatenate(labels)


WRITE = write_parts  # the `default_set` fixture


def tasks(root):
    return sorted(p for p in root.iterdir() if p.is_dir())


def test_partnet_sem_seg_layout(tmp_path):
    root = write_parts(tmp_path, n_shapes=5, seed=2, n_points=128)
    assert root == tmp_path / "sem_seg_h5"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sem_seg_h5"]
    assert sorted(p.name for p in root.iterdir()) == [MARKER, "Chair-1", "Lamp-1", "Table-1"]
    for folder in tasks(root):
        expected = {f"{s}-00.h5" for s in SPLITS} | {f"{s}_files.txt" for s in SPLITS}
        assert {p.name for p in folder.iterdir()} == expected | {"part_names.json"}
        total = 0
        for split in SPLITS:
            assert (folder / f"{split}_files.txt").read_text() == f"./{split}-00.h5\n"
            with h5py.File(folder / f"{split}-00.h5", "r") as f:
                assert set(f.keys()) == {"data", "label_seg", "data_num"}
                b = f["data"].shape[0]
                assert b >= 1 and f["data"].shape == (b, 128, 3) and f["data"].dtype == np.float32
                assert f["label_seg"].shape == (b, 128) and f["label_seg"].dtype == np.uint8
                assert f["data_num"].dtype == np.int32 and np.all(f["data_num"][:] == 128)
            total += b
        assert total == 5


def test_labels_in_range_and_json_matches(default_set):
    root, _ = default_set
    for folder in tasks(root):
        category = folder.name.split("-")[0]
        info = json.loads((folder / "part_names.json").read_text())
        assert info["category"] == category and info["level"] == 1
        assert info["num_classes"] == partnet_num_classes(category, 1)
        assert info["part_names"] == list(PART_NAMES[category]) and info["part_names"][0] == "other"
        _, labels = load(folder, "train")
        assert labels.max() < len(info["part_names"]) <= info["num_classes"]
        used = np.unique(labels)
        assert 0 in used and len(used) == len(info["part_names"])  # every part occurs


def test_shapes_are_normalised_and_y_up(default_set):
    root, _ = default_set
    for folder in tasks(root):
        data, labels = load(folder, "test")
        diag = np.linalg.norm(data.max(1) - data.min(1), axis=1)
        np.testing.assert_allclose(diag, 1.0, atol=0.05)
        np.testing.assert_allclose((data.max(1) + data.min(1)) / 2, 0.0, atol=0.02)
    data, labels = load(root / "Chair-1", "train")
    seat, base = PART_NAMES["Chair"].index("chair_seat"), PART_NAMES["Chair"].index("chair_base")
    for pts, lab in zip(data, labels):  # y is up: the seat is above the legs in every chair
        assert pts[lab == seat, 1].mean() > pts[lab == base, 1].mean()


def test_height_alone_does_not_give_the_labels(default_set):
    """A per-height-bin majority vote beats the majority class but stays well below 100 %."""
    root, _ = default_set
    for folder in tasks(root):
        x, y = load(folder, "train")
        xt, yt = load(folder, "test")
        bins = np.linspace(-0.8, 0.8, 33)
        b, bt = np.digitize(x[..., 1].ravel(), bins), np.digitize(xt[..., 1].ravel(), bins)
        vote = {k: np.bincount(y.ravel()[b == k]).argmax() for k in np.unique(b)}
        pred = np.array([vote.get(k, 0) for k in bt])
        accuracy = (pred == yt.ravel()).mean()
        majority = (yt.ravel() == np.bincount(y.ravel()).argmax()).mean()
        assert majority < accuracy < 0.92, (folder.name, majority, accuracy)


def test_default_speed(default_set):
    _, seconds = default_set
    assert seconds < 10, f"default parts took {seconds:.1f} s"


def test_same_seed_same_bytes(tmp_path):
    a = tree_bytes(write_parts(tmp_path / "a", n_shapes=4, seed=9, n_points=64))
    b = tree_bytes(write_parts(tmp_path / "b", n_shapes=4, seed=9, n_points=64))
    c = tree_bytes(write_parts(tmp_path / "c", n_shapes=4, seed=10, n_points=64))
    assert a == b and a != c


def test_failure_leaves_nothing(tmp_path, monkeypatch):
    def boom(*args):
        raise RuntimeError("interrupted")

    monkeypatch.setitem(parts_mod.BUILDERS, "Lamp", boom)
    with pytest.raises(RuntimeError):
        write_parts(tmp_path, n_shapes=3, n_points=32)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kwargs", [{"n_shapes": 2}, {"n_points": 0}, {"n_points": 10**6},
                                    {"seed": -3}])
def test_bad_arguments_are_input_errors(tmp_path, kwargs):
    with pytest.raises(InputError):
        write_parts(tmp_path, **kwargs)
    assert list(tmp_path.iterdir()) == []
