"""Synthetic rooms: exact S3DIS raw layout, class coverage, determinism, atomicity, difficulty."""
from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from conftest import tree_bytes
from pointgcn.data.classes import S3DIS_CLASSES
from pointgcn.data.synthetic import rooms as rooms_mod
from pointgcn.data.synthetic import write_rooms
from pointgcn.data.synthetic.common import MARKER
from pointgcn.errors import InputError

ROOT = "Stanford3dDataset_v1.2_Aligned_Version"
LINE = re.compile(r"-?\d+\.\d{3} -?\d+\.\d{3} -?\d+\.\d{3} \d{1,3} \d{1,3} \d{1,3}")
ANNO = re.compile(r"(?P<cls>[a-z]+)_(?P<k>[1-9]\d*)\.txt")


def parse(path: Path) -> np.ndarray:
    return np.array(path.read_text().split(), float).reshape(-1, 6)


WRITE = write_rooms  # the `default_set` fixture: the default room set (12 rooms)


@pytest.fixture(scope="module")
def rooms(default_set):
    """{room folder: [(class, points) per annotation file]} of the default set."""
    root, _ = default_set
    return {room: [(ANNO.fullmatch(f.name)["cls"], parse(f))
                   for f in sorted((room / "Annotations").iterdir())]
            for room in sorted(p for p in root.glob("Area_*/*") if p.is_dir())}


def test_default_set_is_fast_and_modest(default_set, rooms):
    _, seconds = default_set
    data = rooms
    assert seconds < 20, f"default rooms took {seconds:.1f} s"
    assert len(data) == 12
    for parts in data.values():
        assert 20_000 <= sum(len(a) for _, a in parts) <= 100_000


def test_raw_s3dis_layout(tmp_path):
    root = write_rooms(tmp_path, n_rooms=2, seed=3)
    assert root == tmp_path / ROOT
    assert sorted(p.name for p in tmp_path.iterdir()) == [ROOT]  # no temp leftovers
    assert sorted(p.name for p in root.iterdir()) == [MARKER, "Area_1", "Area_5"]
    for room in root.glob("Area_*/*"):
        assert re.fullmatch(r"[a-zA-Z]+_\d+", room.name)
        assert sorted(p.name for p in room.iterdir()) == ["Annotations", f"{room.name}.txt"]
        names = sorted(p.name for p in (room / "Annotations").iterdir())
        per_class = defaultdict(list)
        for name in names:
            m = ANNO.fullmatch(name)
            assert m and m["cls"] in S3DIS_CLASSES, name
            per_class[m["cls"]].append(int(m["k"]))
        for ks in per_class.values():  # instances numbered 1..n per class
            assert sorted(ks) == list(range(1, len(ks) + 1))
        for name in names:
            text = (room / "Annotations" / name).read_text()
            lines = text.splitlines()
            assert len(lines) >= rooms_mod.MIN_POINTS and text.endswith("\n")
            assert all(LINE.fullmatch(line) for line in lines), name
            rgb = parse(room / "Annotations" / name)[:, 3:]
            assert rgb.min() >= 0 and rgb.max() <= 255


def test_room_file_is_its_annotations_concatenated(default_set):
    root, _ = default_set
    for room in root.glob("Area_*/*"):
        annotations = sorted((room / "Annotations").iterdir())
        joined = b"".join(p.read_bytes() for p in annotations)
        assert (room / f"{room.name}.txt").read_bytes() == joined


def test_every_class_appears_and_area5_is_populated(default_set, rooms):
    root, _ = default_set
    data = rooms
    seen = {cls for parts in data.values() for cls, _ in parts}
    assert seen == set(S3DIS_CLASSES)
    assert {p.name for p in root.iterdir()} == {MARKER} | {f"Area_{i}" for i in range(1, 7)}
    assert any((root / "Area_5").iterdir())
    for parts in data.values():  # every room is closed: floor, ceiling, four walls, a door
        classes = [cls for cls, _ in parts]
        assert classes.count("floor") == 1 and classes.count("ceiling") == 1
        assert classes.count("wall") == 4 and "door" in classes


def test_openings_lie_in_the_wall_planes(rooms):
    """Windows and boards are set into the walls: within a few cm of a wall plane."""
    data = rooms
    checked = 0
    for parts in data.values():
        walls = np.concatenate([a[:, :3] for cls, a in parts if cls == "wall"])
        lo, hi = np.percentile(walls, 1, axis=0), np.percentile(walls, 99, axis=0)
        for cls, a in parts:
            if cls in ("window", "board"):
                d = np.min(np.abs(np.column_stack([a[:, :2] - lo[:2], a[:, :2] - hi[:2]])), axis=1)
                assert np.median(d) < 0.05 and d.max() < 0.25, cls
                checked += 1
    assert checked >= 4


def test_separable_but_not_trivially(rooms):
    """Colour + height name a point's class far above chance but far from perfectly, and
    several class pairs have overlapping instance sizes (size alone does not decide)."""
    data = rooms
    feats, labels = [], []
    sizes = defaultdict(list)
    for parts in data.values():
        z0 = min(a[:, 2].min() for _, a in parts)
        z1 = max(a[:, 2].max() for _, a in parts)
        for cls, a in parts:
            feats.append(np.column_stack([a[:, 3:] / 255, (a[:, 2] - z0) / (z1 - z0)]))
            labels.append(np.full(len(a), S3DIS_CLASSES.index(cls)))
            sizes[cls].append(np.sort(np.ptp(a[:, :3], axis=0)))
    x, y = np.concatenate(feats), np.concatenate(labels)
    centroids = np.stack([x[y == c].mean(0) for c in range(13)])
    pred = np.argmin(((x[:, None] - centroids[None]) ** 2).sum(-1), axis=1)
    accuracy = (pred == y).mean()
    assert 3 / 13 < accuracy < 0.9, accuracy
    rgb_only = np.argmin(((x[:, None, :3] - centroids[None, :, :3]) ** 2).sum(-1), axis=1)
    assert (rgb_only == y).mean() < 0.5  # colour alone is weak
    ranges = {c: (np.min(v, 0), np.max(v, 0)) for c, v in sizes.items()}
    overlapping = [(a, b) for a in ranges for b in ranges if a < b
                   and np.all(ranges[a][0] <= ranges[b][1])
                   and np.all(ranges[b][0] <= ranges[a][1])]
    assert len(overlapping) >= 2, overlapping


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a = tree_bytes(write_rooms(tmp_path / "a", n_rooms=2, seed=7))
    b = tree_bytes(write_rooms(tmp_path / "b", n_rooms=2, seed=7))
    c = tree_bytes(write_rooms(tmp_path / "c", n_rooms=2, seed=8))
    assert a == b
    assert a != c


def test_failure_leaves_no_partial_tree_and_keeps_previous(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = rooms_mod.format_points

    def failing(xyz, rgb):
        calls["n"] += 1
        if calls["n"] > 5:
            raise RuntimeError("disk full")
        return real(xyz, rgb)

    monkeypatch.setattr(rooms_mod, "format_points", failing)
    with pytest.raises(RuntimeError):
        write_rooms(tmp_path, n_rooms=1, seed=0)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(rooms_mod, "format_points", real)
    before = tree_bytes(write_rooms(tmp_path, n_rooms=1, seed=0))
    calls["n"] = 0
    monkeypatch.setattr(rooms_mod, "format_points", failing)
    with pytest.raises(RuntimeError):
        write_rooms(tmp_path, n_rooms=1, seed=1, overwrite=True)
    assert tree_bytes(tmp_path / ROOT) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [ROOT]


@pytest.mark.parametrize("kwargs", [{"n_rooms": 0}, {"areas": 7}, {"areas": 0}, {"seed": -1},
                                    {"n_rooms": 2.5}])
def test_bad_arguments_are_input_errors(tmp_path, kwargs):
    with pytest.raises(InputError):
        write_rooms(tmp_path, **kwargs)
    assert list(tmp_path.iterdir()) == []
