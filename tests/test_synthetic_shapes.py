"""Synthetic shapes: exact raw ModelNet40 OFF layout, parseable meshes, determinism, difficulty."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import trimesh

from conftest import tree_bytes
from pointgcn.data.classes import MODELNET40_CLASSES
from pointgcn.data.synthetic import SHAPE_CLASSES, SHAPE_NAMES_FILE, write_shapes
from pointgcn.data.synthetic import shapes as shapes_mod
from pointgcn.errors import InputError


def read_off(path: Path) -> tuple[np.ndarray, np.ndarray, bool]:
    """Independent strict OFF reader: vertices, faces, and whether the header was glued."""
    lines = path.read_text().splitlines()
    glued = lines[0] != "OFF"
    if glued:
        counts, body = lines[0][3:].split(), lines[1:]
    else:
        counts, body = lines[1].split(), lines[2:]
    nv, nf, ne = map(int, counts)
    assert ne == 0 and len(body) == nv + nf
    verts = np.array([list(map(float, line.split())) for line in body[:nv]])
    faces = np.array([list(map(int, line.split())) for line in body[nv:]])
    assert verts.shape == (nv, 3) and faces.shape == (nf, 4) and np.all(faces[:, 0] == 3)
    return verts, faces[:, 1:], glued


WRITE = write_shapes  # the `default_set` fixture


def test_modelnet_raw_layout(tmp_path):
    root = write_shapes(tmp_path, n_per_class=4, seed=1)
    assert root == tmp_path / "ModelNet40"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ModelNet40"]
    names = (root / SHAPE_NAMES_FILE).read_text().splitlines()
    assert names == list(SHAPE_CLASSES) == sorted(names)
    assert len(names) >= 10 and set(names) <= set(MODELNET40_CLASSES)
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == names
    for cls in names:
        assert sorted(p.name for p in (root / cls).iterdir()) == ["test", "train"]
        train = sorted(p.name for p in (root / cls / "train").iterdir())
        test = sorted(p.name for p in (root / cls / "test").iterdir())
        assert train == [f"{cls}_{i:04d}.off" for i in (1, 2, 3)]  # numbering runs on into test
        assert test == [f"{cls}_0004.off"]


def test_off_files_parse_with_trimesh_and_our_reader(tmp_path):
    root = write_shapes(tmp_path, n_per_class=2, seed=0, test_fraction=0.5)
    files = sorted(root.rglob("*.off"))
    assert len(files) == 2 * len(SHAPE_CLASSES)
    glued = 0
    for path in files:
        verts, faces, is_glued = read_off(path)
        glued += is_glued
        assert faces.min() >= 0 and faces.max() < len(verts)
        mesh = trimesh.load(path, file_type="off", force="mesh", process=False)
        assert len(mesh.faces) == len(faces) > 0
        np.testing.assert_allclose(mesh.vertices, verts, atol=1e-6)
        assert mesh.area > 0
    assert 1 <= glued < len(files)  # the `OFF8 6 0` quirk is exercised, but only on a few
    assert re.fullmatch(r"OFF\d+ \d+ 0", next(p for p in files if read_off(p)[2])
                        .read_text().splitlines()[0])


def test_default_set_size_and_speed(default_set):
    root, seconds = default_set
    assert seconds < 10, f"default shapes took {seconds:.1f} s"
    for cls in SHAPE_CLASSES:
        assert len(list((root / cls / "train").iterdir())) == 15
        assert len(list((root / cls / "test").iterdir())) == 5


def _features(path: Path) -> np.ndarray:
    """Pose-invariant shape statistics of 512 surface points (height ratio, spread in plan)."""
    verts, faces, _ = read_off(path)
    mesh = trimesh.Trimesh(verts, faces, process=False)
    pts = trimesh.sample.sample_surface(mesh, 512, seed=0)[0]
    pts = pts - pts.mean(0)
    pts /= np.linalg.norm(pts, axis=1).max()
    plan = np.sort(np.linalg.eigvalsh(np.cov(pts[:, :2].T)))
    height = np.ptp(pts[:, 2]) / np.ptp(pts[:, :2], axis=0).max()
    return np.array([height, *(plan / plan.sum()), np.abs(pts[:, 2]).mean()])


def test_classes_separable_but_not_trivially(default_set):
    """Nearest class centroid on simple statistics: far above chance, far below perfect; and
    look-alike pairs overlap in their height ratio (chair/stool, table/desk, bed/sofa)."""
    root, _ = default_set
    feats = {split: [(_features(p), i) for i, c in enumerate(SHAPE_CLASSES)
                     for p in sorted((root / c / split).iterdir())] for split in ("train", "test")}
    xtr, ytr = np.stack([f for f, _ in feats["train"]]), np.array([c for _, c in feats["train"]])
    xte, yte = np.stack([f for f, _ in feats["test"]]), np.array([c for _, c in feats["test"]])
    centroids = np.stack([xtr[ytr == c].mean(0) for c in range(len(SHAPE_CLASSES))])
    accuracy = (np.argmin(((xte[:, None] - centroids[None]) ** 2).sum(-1), 1) == yte).mean()
    assert 3 / len(SHAPE_CLASSES) < accuracy < 0.9, accuracy
    x = np.concatenate([xtr, xte])
    y = np.concatenate([ytr, yte])
    height = {c: x[y == i, 0] for i, c in enumerate(SHAPE_CLASSES)}
    for a, b in (("chair", "stool"), ("table", "desk"), ("bed", "sofa")):
        assert height[a].min() < height[b].max() and height[b].min() < height[a].max(), (a, b)


def test_same_seed_same_bytes(tmp_path):
    a = tree_bytes(write_shapes(tmp_path / "a", n_per_class=2, seed=5))
    b = tree_bytes(write_shapes(tmp_path / "b", n_per_class=2, seed=5))
    c = tree_bytes(write_shapes(tmp_path / "c", n_per_class=2, seed=6))
    assert a == b and a.keys() == c.keys() and a != c


def test_failure_leaves_nothing(tmp_path, monkeypatch):
    real = shapes_mod.off_text
    calls = {"n": 0}

    def failing(mesh, glued_header=False):
        calls["n"] += 1
        if calls["n"] > 10:
            raise RuntimeError("interrupted")
        return real(mesh, glued_header)

    monkeypatch.setattr(shapes_mod, "off_text", failing)
    with pytest.raises(RuntimeError):
        write_shapes(tmp_path, n_per_class=2)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kwargs", [{"n_per_class": 0}, {"n_per_class": 1},
                                    {"test_fraction": 1.0}, {"test_fraction": -0.1}])
def test_bad_arguments_are_input_errors(tmp_path, kwargs):
    with pytest.raises(InputError):
        write_shapes(tmp_path, **kwargs)
    assert list(tmp_path.iterdir()) == []
