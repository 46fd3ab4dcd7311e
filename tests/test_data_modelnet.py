"""ModelNet40: OFF tree (incl. the glued `OFF8 6 0` header), the 2048-point h5, the normal-
resampled text layout, the prepared cache, class lists and augmentation determinism."""
import h5py
import numpy as np
import pytest
import torch

from pointgcn.data.classes import MODELNET40_CLASSES
from pointgcn.data.modelnet import ModelNet40, find_modelnet, prepare_modelnet40
from pointgcn.errors import ConfigError, FormatError, InputError

CUBE_V = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], float)
CUBE_F = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]


def write_off(path, scale, glued=False):
    """A box mesh with quad faces; `glued` writes ModelNet's `OFF8 6 0` first line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    v = CUBE_V * scale + [5.0, -2.0, 1.0]
    head = "OFF8 6 0\n" if glued else "OFF\n8 6 0\n"
    body = "".join(f"{a:.4f} {b:.4f} {c:.4f}\n" for a, b, c in v)
    body += "".join("4 " + " ".join(map(str, f)) + "\n" for f in CUBE_F)
    path.write_text(head + body)


@pytest.fixture(scope="module")
def off_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("mn") / "ModelNet40"
    for c, cls in enumerate(["table", "chair", "night_stand"]):
        for k, split in enumerate(["train", "train", "test"]):
            write_off(root / cls / split / f"{cls}_{k + 1:04d}.off", [1 + c, 1, 0.5 + k],
                      glued=(c == 0 and k == 0))
    return root


def test_off_tree_classes_counts_and_sampling(off_tree):
    src = find_modelnet(off_tree.parent)
    assert src.kind == "tree" and src.classes == ("chair", "night_stand", "table")
    train = ModelNet40(off_tree, "train", n_points=256, normals=True)
    test = ModelNet40(off_tree, "test", n_points=256)
    assert (len(train), len(test), train.num_classes) == (6, 3, 3)
    assert train.labels.tolist() == [0, 0, 1, 1, 2, 2]
    x, y = train[4]  # table_0001: the `OFF8 6 0` file
    assert x.shape == (6, 256) and x.dtype == torch.float32 and y.item() == 2
    pts, nrm = x[:3].numpy().T, x[3:].numpy().T
    np.testing.assert_allclose(pts.mean(0), 0, atol=1e-5)
    assert np.isclose(np.linalg.norm(pts, axis=1).max(), 1.0, atol=1e-5)
    # every sample lies on a face of the (normalised) box: one coordinate at its min or max
    on_face = np.isclose(pts, pts.min(0), atol=1e-4) | np.isclose(pts, pts.max(0), atol=1e-4)
    assert on_face.any(axis=1).all()
    np.testing.assert_allclose(np.abs(nrm).max(1), 1.0, atol=1e-5)  # axis-aligned unit normals
    assert torch.equal(train[4][0], x)  # the same sample every time (seeded per shape)
    assert test[0][0].shape == (3, 256)


def test_names_file_sets_class_order(off_tree, tmp_path):
    import shutil

    root = tmp_path / "ModelNet40"
    shutil.copytree(off_tree, root)
    (root / "shape_names.txt").write_text("table\nnight_stand\nchair\n")
    ds = ModelNet40(root, "train", n_points=64)
    assert ds.classes == ("table", "night_stand", "chair")
    assert ds.labels.tolist() == [2, 2, 1, 1, 0, 0]


def write_h5_layout(root, n_points=2048):
    folder = root / "modelnet40_ply_hdf5_2048"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    arrays = {}
    for split, sizes in (("train", (5, 3)), ("test", (4,))):
        names = []
        for k, n in enumerate(sizes):
            data = rng.random((n, n_points, 3)).astype(np.float32)
            label = rng.integers(0, 40, (n, 1)).astype(np.uint8)
            with h5py.File(folder / f"ply_data_{split}{k}.h5", "w") as f:
                f["data"], f["label"] = data, label
                f["faceId"] = np.zeros((n, n_points), np.int32)
            names.append(f"data/modelnet40_ply_hdf5_2048/ply_data_{split}{k}.h5")
            arrays.setdefault(split, []).append((data, label))
        (folder / f"{split}_files.txt").write_text("\n".join(names) + "\n")
    (folder / "shape_names.txt").write_text("\n".join(MODELNET40_CLASSES) + "\n")
    return folder, arrays


def test_h5_layout(tmp_path):
    folder, arrays = write_h5_layout(tmp_path)
    ds = ModelNet40(tmp_path, "train", n_points=1024)
    assert ds.source.kind == "h5" and ds.classes == MODELNET40_CLASSES and len(ds) == 8
    data = np.concatenate([d for d, _ in arrays["train"]])
    labels = np.concatenate([lab[:, 0] for _, lab in arrays["train"]])
    x, y = ds[6]
    np.testing.assert_array_equal(x.numpy().T, data[6, :1024])  # DGCNN: the first n points
    assert y.item() == labels[6] and y.dtype == torch.int64
    assert len(ModelNet40(folder, "test")) == 4
    with pytest.raises(ConfigError, match="no normals"):
        ModelNet40(folder, normals=True)
    with pytest.raises(ConfigError, match="exceeds the 2048"):
        ModelNet40(folder, n_points=4096)


def write_resampled(root, n=300):
    folder = root / "modelnet40_normal_resampled"
    rng = np.random.default_rng(1)
    ids = {"train": ["airplane_0001", "night_stand_0002"], "test": ["airplane_0627"]}
    clouds = {}
    for split, names in ids.items():
        for shape_id in names:
            cls = shape_id.rsplit("_", 1)[0]
            pts = rng.normal(size=(n, 3)) * 3 + 10
            nrm = rng.normal(size=(n, 3))
            nrm /= np.linalg.norm(nrm, axis=1, keepdims=True)
            (folder / cls).mkdir(parents=True, exist_ok=True)
            rows = np.concatenate([pts, nrm], 1)
            (folder / cls / f"{shape_id}.txt").write_text(
                "".join(",".join(f"{v:.6f}" for v in r) + "\n" for r in rows))
            clouds[shape_id] = rows
        (folder / f"modelnet40_{split}.txt").write_text("\n".join(names) + "\n")
    (folder / "modelnet40_shape_names.txt").write_text("\n".join(MODELNET40_CLASSES) + "\n")
    return folder, clouds


def test_resampled_modelnet10_reads_its_own_lists(tmp_path, monkeypatch):
    """modelnet40_normal_resampled ships modelnet10_{shape_names,train,test}.txt beside the
    modelnet40 lists: data set modelnet10 takes its classes and shapes from those (10 classes,
    their order), modelnet40 keeps its own; build_datasets caches them apart."""
    from pointgcn.data.build import build_datasets

    folder, _ = write_resampled(tmp_path)
    ten = ["bathtub", "bed", "chair", "desk", "dresser", "monitor", "night_stand", "sofa",
           "table", "toilet"]
    (folder / "modelnet10_shape_names.txt").write_text("\n".join(ten) + "\n")
    (folder / "modelnet10_train.txt").write_text("night_stand_0002\n")
    (folder / "modelnet10_test.txt").write_text("night_stand_0002\n")
    ten_set = ModelNet40(tmp_path, "train", n_points=50, variant="modelnet10")
    assert ten_set.classes == tuple(ten) and ten_set.labels.tolist() == [ten.index("night_stand")]
    assert [p.stem for p in ten_set.files] == ["night_stand_0002"]
    forty = ModelNet40(tmp_path, "train", n_points=50)
    assert forty.num_classes == 40 and len(forty) == 2
    assert prepare_modelnet40(folder, tmp_path / "p10", n_points=50, progress=False,
                              variant="modelnet10") == {"train": 1, "test": 1}
    monkeypatch.setenv("POINTGCN_CACHE", str(tmp_path / "cache"))
    for name, n_classes in (("modelnet10", 10), ("modelnet40", 40)):
        cfg = {"seed": 0, "data": {"dataset": name, "root": str(folder), "n_points": 50,
                                   "augment": False}}
        assert len(build_datasets(cfg, ("test",)).class_names) == n_classes
    (folder / "modelnet10_shape_names.txt").unlink()
    with pytest.raises(FormatError, match="no modelnet10_shape_names.txt"):
        find_modelnet(folder, "modelnet10")
    for split in ("train", "test"):
        (folder / f"modelnet10_{split}.txt").unlink()
    with pytest.raises(FormatError, match="without modelnet10_train.txt"):
        find_modelnet(folder, "modelnet10")


def test_resampled_layout_and_prepared_cache(tmp_path):
    folder, clouds = write_resampled(tmp_path)
    ds = ModelNet40(tmp_path, "train", n_points=200, normals=True)
    assert ds.source.kind == "resampled" and len(ds) == 2
    assert ds.labels.tolist() == [0, MODELNET40_CLASSES.index("night_stand")]
    x, _ = ds[1]
    rows = clouds["night_stand_0002"][:200]
    c = rows[:, :3] - rows[:, :3].mean(0)
    np.testing.assert_allclose(x[:3].numpy().T, c / np.linalg.norm(c, axis=1).max(), atol=1e-5)
    np.testing.assert_allclose(x[3:].numpy().T, rows[:, 3:], atol=1e-5)
    counts = prepare_modelnet40(folder, tmp_path / "prep", n_points=200, progress=False)
    assert counts == {"train": 2, "test": 1}
    prepared = ModelNet40(tmp_path / "prep", "train", n_points=200, normals=True)
    assert prepared.source.kind == "prepared" and prepared.classes == MODELNET40_CLASSES
    for i in range(2):
        np.testing.assert_allclose(prepared[i][0], ds[i][0], atol=1e-6)
        assert prepared[i][1] == ds[i][1]
    with pytest.raises(Exception, match="already in a ready-to-train layout"):
        prepare_modelnet40(tmp_path / "prep", tmp_path / "again", progress=False)


def test_prepared_off_equals_direct_sampling_and_augment_is_seeded(off_tree, tmp_path):
    prepare_modelnet40(off_tree, tmp_path, n_points=128, seed=3, progress=False)
    direct = ModelNet40(off_tree, "test", n_points=128, normals=True, seed=3)
    cached = ModelNet40(tmp_path, "test", n_points=128, normals=True, seed=3)
    assert cached.classes == direct.classes
    for i in range(len(direct)):
        np.testing.assert_allclose(cached[i][0], direct[i][0], atol=1e-6)
    aug = ModelNet40(tmp_path, "test", n_points=128, augment=True, seed=1)
    a, b = aug[0][0], aug[0][0]
    assert torch.equal(a, b) and not torch.equal(a, cached[0][0][:3])
    aug.set_epoch(1)
    assert not torch.equal(aug[0][0], a)


def test_bad_folders_and_files(tmp_path):
    with pytest.raises(FormatError, match="not a ModelNet folder"):
        ModelNet40(tmp_path)
    root = tmp_path / "ModelNet40"
    write_off(root / "cup" / "train" / "cup_0001.off", 1.0)
    (root / "cup" / "train" / "cup_0002.off").write_text("OFF\n3 1 0\n0 0 0\n1 0 0\n")
    ds = ModelNet40(root, "train", n_points=32)
    ds[0]
    with pytest.raises(FormatError, match="cup_0002.off"):
        ds[1]


def test_interrupted_prepare_leaves_no_cache(tmp_path, monkeypatch):
    """data/build.py treats `modelnet_train.npz` as "the cache is complete": a run stopped in
    the test split (after train was done) must leave none, and no staging folder either."""
    import pointgcn.data.modelnet as mn

    folder, _ = write_resampled(tmp_path / "src")
    real = mn.load_shape

    def stop_in_test_split(kind, path, *args):
        if path.stem == "airplane_0627":  # the only test shape; train shapes come first
            raise KeyboardInterrupt
        return real(kind, path, *args)

    monkeypatch.setattr(mn, "load_shape", stop_in_test_split)
    out = tmp_path / "cache" / "key"
    with pytest.raises(KeyboardInterrupt):
        prepare_modelnet40(folder, out, n_points=50, progress=False)
    assert not (tmp_path / "cache").exists()  # nor the folder made for it
    monkeypatch.setattr(mn, "load_shape", real)
    assert prepare_modelnet40(folder, out, n_points=50, progress=False) == {"train": 2, "test": 1}
    assert sorted(p.name for p in out.iterdir()) == ["modelnet_test.npz", "modelnet_train.npz"]
    with pytest.raises(InputError, match="key: exists and is not an empty folder"):
        prepare_modelnet40(folder, out, n_points=50, progress=False)


def test_broken_split_is_an_error_not_a_missing_split(tmp_path):
    folder, _ = write_resampled(tmp_path)
    (folder / "modelnet40_test.txt").write_text("airplane_0001\nnot_a_class_0001\n")
    with pytest.raises(FormatError, match="class 'not_a_class' is not in the class list"):
        prepare_modelnet40(folder, tmp_path / "out", n_points=50, progress=False)
    assert not (tmp_path / "out").exists()
    prepared = tmp_path / "prep"
    prepared.mkdir()
    (prepared / "modelnet_train.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(FormatError, match="modelnet_train.npz: not a prepared ModelNet split"):
        ModelNet40(prepared)


def test_build_cache_follows_edited_source_files(tmp_path, monkeypatch):
    """The sampled-mesh cache of build_datasets is keyed by the files' sizes and times too:
    an edited source is re-sampled, not served stale."""
    import os

    from pointgcn.data.build import build_datasets

    monkeypatch.setenv("POINTGCN_CACHE", str(tmp_path / "cache"))
    folder, clouds = write_resampled(tmp_path / "src")
    cfg = {"seed": 0, "data": {"dataset": "modelnet40", "root": str(folder), "n_points": 100,
                               "augment": False}}
    first = build_datasets(cfg, ("test",)).test[0][0]
    path = folder / "airplane" / "airplane_0627.txt"          # the test shape, edited
    rows = np.loadtxt(path, delimiter=",")
    rows[:, :3] = np.random.default_rng(1).random((len(rows), 3))
    np.savetxt(path, rows, delimiter=",", fmt="%.6f")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10 ** 9))
    again = build_datasets(cfg, ("test",)).test[0][0]
    assert len(list((tmp_path / "cache" / "modelnet").iterdir())) == 2
    assert not torch.allclose(first, again)


def write_pcd(path, xyz):
    """A binary PCD 0.7 `FIELDS x y z` cloud, the layout of shared/data/modelnet10."""
    path.parent.mkdir(parents=True, exist_ok=True)
    head = ("# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\nFIELDS x y z\n"
            "SIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\n"
            f"WIDTH {len(xyz)}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {len(xyz)}\n"
            "DATA binary\n")
    path.write_bytes(head.encode() + np.asarray(xyz, "<f4").tobytes())


def test_modelnet10_style_pcd_tree_train_only(tmp_path, capsys):
    """ModelNet10 as the shared copy holds it: <class>/train/<class>_NNNN.pcd, 1,024-point
    clouds without normals, z up, raw units, no test split; classes from the folders."""
    from apps.cli import main
    from pointgcn.data.build import build_datasets
    from pointgcn.data.transforms import normalize_unit_sphere

    rng = np.random.default_rng(0)
    root = tmp_path / "modelnet10"
    clouds = {}
    for cls in ("toilet", "bathtub", "monitor"):
        for k in range(5):
            xyz = (rng.normal(size=(64, 3)) * [30, 20, 10] + [0, 0, 40]).astype(np.float32)
            clouds[f"{cls}_{k + 1:04d}"] = xyz
            write_pcd(root / cls / "train" / f"{cls}_{k + 1:04d}.pcd", xyz)
    src = find_modelnet(root)
    assert src.kind == "tree" and src.classes == ("bathtub", "monitor", "toilet")
    cfg = {"seed": 0, "data": {"dataset": "modelnet10", "root": str(root), "n_points": 32,
                               "val_fraction": 0.2, "augment": False}}
    bundle = build_datasets(cfg, ("train", "val"))
    assert (len(bundle.train), len(bundle.val)) == (12, 3) and bundle.in_channels == 3
    assert "no test split" in bundle.info["note"]
    ds = bundle.train.dataset
    names = sorted(clouds)  # list order: class folders sorted, files sorted
    for i in (0, 7, 14):
        pts, label = ds[i]
        want = normalize_unit_sphere(clouds[names[i]][:32])  # the first n_points stored
        np.testing.assert_allclose(pts.numpy().T, want, atol=1e-6)
        assert ds.classes[int(label)] == names[i].rsplit("_", 1)[0]
    with pytest.raises(ConfigError, match="store no normals") as e:
        build_datasets({**cfg, "data": {**cfg["data"], "normals": True}}, ("train", "val"))
    assert str(e.value).startswith(f"{root}: ")  # the user's folder, not the sampling cache
    with pytest.raises(FormatError, match="no test split"):
        build_datasets(cfg, ("test",))
    assert main(["data", "info", str(root), "--json"]) == 0
    import json
    info = json.loads(capsys.readouterr().out)
    assert info["splits"]["train"]["files"] == {".pcd": 15} and info["channels"] == ["x", "y", "z"]
    assert "test" not in info["splits"] and "no test split" in info["note"]
    assert main(["data", "prepare", "modelnet10", "--src", str(root), "--out",
                 str(tmp_path / "prep"), "--points", "48", "--no-progress"]) == 0
    assert "15 train shapes" in capsys.readouterr().out
    again = ModelNet40(tmp_path / "prep", "train", n_points=48)
    np.testing.assert_allclose(again[0][0].numpy().T, normalize_unit_sphere(
        clouds[names[0]][:48]), atol=1e-6)
    with pytest.raises(ConfigError, match="store no normals"):
        ModelNet40(tmp_path / "prep", "train", n_points=48, normals=True)


def test_tree_shape_files_are_what_read_points_reads(tmp_path):
    """One suffix list (pointgcn.io.SUPPORTED): a tree's class folder offers every file
    read_points reads (e57 scans, glTF scenes …), in any letter case, and nothing else."""
    from pointgcn.data.modelnet import _shape_files
    from pointgcn.io import SUPPORTED

    folder = tmp_path / "chair" / "train"
    folder.mkdir(parents=True)
    for i, suffix in enumerate(SUPPORTED):
        (folder / f"chair_{i:04d}{suffix.upper() if i % 2 else suffix}").write_bytes(b"x")
    (folder / "notes.md").write_text("not a shape")
    found = _shape_files(folder)
    assert sorted(p.suffix.lower() for p in found) == sorted(SUPPORTED)
