"""NPY/NPZ readers and the npy/npz/ply writers' round trips."""
import numpy as np
import pytest

from pointgcn.errors import FormatError, InputError
from pointgcn.io import PointCloud, read_points, write_npy, write_npz, write_points

rng = np.random.default_rng(0)
N = 30
XYZ = rng.normal(size=(N, 3)).astype(np.float32)
RGB = rng.random((N, 3)).astype(np.float32)
NRM = rng.normal(size=(N, 3))
NRM = (NRM / np.linalg.norm(NRM, axis=1, keepdims=True)).astype(np.float32)
LAB = rng.integers(0, 13, N)


@pytest.mark.parametrize("parts, has", [
    ((XYZ,), ()), ((XYZ, LAB[:, None]), ("labels",)), ((XYZ, RGB * 255), ("colors",)),
    ((XYZ, RGB, LAB[:, None]), ("colors", "labels")), ((XYZ, RGB, NRM), ("colors", "normals")),
    ((XYZ, RGB, NRM, LAB[:, None]), ("colors", "normals", "labels")),
    ((XYZ, NRM), ("normals",)), ((XYZ, NRM, LAB[:, None]), ("normals", "labels")),
])
def test_npy_column_rule(tmp_path, parts, has):
    path = tmp_path / "a.npy"
    np.save(path, np.concatenate([p.astype(np.float64) for p in parts], axis=1))
    cloud = read_points(path)
    np.testing.assert_array_equal(cloud.points, XYZ)
    for name, want in (("colors", RGB), ("normals", NRM), ("labels", LAB)):
        got = getattr(cloud, name)
        if name in has:
            np.testing.assert_allclose(got, want, atol=1e-6)
        else:
            assert got is None, name


def test_structured_npy(tmp_path):
    table = np.zeros(N, [("x", "f4"), ("y", "f4"), ("z", "f4"), ("label", "u1"), ("t", "f8")])
    for i, a in enumerate("xyz"):
        table[a] = XYZ[:, i]
    table["label"], table["t"] = LAB, np.arange(N) * 0.5
    path = tmp_path / "s.npy"
    np.save(path, table)
    cloud = read_points(path)
    np.testing.assert_array_equal(cloud.points, XYZ)
    np.testing.assert_array_equal(cloud.labels, LAB)
    np.testing.assert_array_equal(cloud.fields["t"], np.arange(N) * 0.5)


def test_npz_keys(tmp_path):
    path = tmp_path / "a.NPZ"
    with open(path, "wb") as f:  # a file object: np.savez would append ".npz" to the name
        np.savez(f, pos=XYZ, rgb=(RGB * 255).round().astype(np.uint8),
                 normal=NRM, label=LAB[:, None], pred=LAB[::-1].copy(), cls=np.array([7]))
    cloud = read_points(path)
    np.testing.assert_array_equal(cloud.points, XYZ)
    np.testing.assert_allclose(cloud.colors, (RGB * 255).round() / 255, atol=1e-7)
    np.testing.assert_array_equal(cloud.normals, NRM)
    np.testing.assert_array_equal(cloud.labels, LAB)
    assert list(cloud.fields) == ["pred"]  # per-file `cls` is not per-point


@pytest.mark.parametrize("arrays, match", [
    (dict(foo=XYZ, bar=LAB), "no point array; expected one of the keys points"),
    (dict(points=XYZ, labels=LAB[:5]), "'labels' has 5 rows"),
    (dict(points=XYZ, colors=RGB[:, :2]), "'colors' has shape"),
    (dict(points=XYZ[:, :2]), "30x2 values"),
])
def test_bad_npz(tmp_path, arrays, match):
    path = tmp_path / "b.npz"
    np.savez(path, **arrays)
    with pytest.raises(FormatError, match=match):
        read_points(path)


def test_object_and_garbage_npy_refused(tmp_path):
    path = tmp_path / "o.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(FormatError, match="not a readable numpy file"):
        read_points(path)
    path.write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(FormatError, match="not a readable numpy file"):
        read_points(path)


@pytest.mark.parametrize("colors, normals, labels, width", [
    (None, None, None, 3), (RGB, None, LAB, 7), (None, NRM, None, 6), (None, NRM, LAB, 7),
    (RGB, NRM, LAB, 10), (RGB, None, None, 6),
])
def test_write_npy_round_trip(tmp_path, colors, normals, labels, width):
    cloud = PointCloud(XYZ, colors, normals, labels)
    path = tmp_path / "w.npy"
    names = write_npy(path, cloud)
    assert np.load(path).shape == (N, width) == (N, len(names))
    back = read_points(path)
    for name in ("points", "colors", "normals", "labels"):
        want, got = getattr(cloud, name), getattr(back, name)
        assert (want is None) == (got is None), name
        if want is not None:
            np.testing.assert_array_equal(got, want)


def test_write_npz_round_trip_keeps_fields(tmp_path):
    cloud = PointCloud(XYZ, RGB, NRM, LAB, {"pred": LAB[::-1].copy(),
                                            "prob": rng.random((N, 4)).astype(np.float32)})
    path = tmp_path / "w.npz"
    write_points(path, cloud)
    back = read_points(path)
    for name in ("points", "colors", "normals", "labels"):
        np.testing.assert_array_equal(getattr(back, name), getattr(cloud, name))
    np.testing.assert_array_equal(back.fields["pred"], cloud.fields["pred"])
    np.testing.assert_array_equal(back.fields["prob"], cloud.fields["prob"])


def test_write_refusals_leave_no_file(tmp_path):
    cloud = PointCloud(XYZ, fields={"pred": LAB})
    with pytest.raises(InputError, match="keep the fields pred"):
        write_npy(tmp_path / "x.npy", cloud)
    with pytest.raises(InputError, match="clash with npz keys"):
        write_npz(tmp_path / "x.npz", PointCloud(XYZ, fields={"rgb": LAB}))
    with pytest.raises(InputError, match="supported: .ply .npy .npz"):
        write_points(tmp_path / "x.xyz", cloud)
    assert not list(tmp_path.iterdir())
    write_points(tmp_path / "x.PLY", cloud)
    np.testing.assert_array_equal(read_points(tmp_path / "x.PLY").fields["pred"], LAB)
