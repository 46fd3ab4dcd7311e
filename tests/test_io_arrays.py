"""NPY/NPZ readers and the npy/npz/ply writers' round trips."""
import numpy as np
import pytest

from pointgcn.errors import FormatError, InputError
from pointgcn.io import (PointCloud, ReadReport, output_fields, read_points, write_npy, write_npz,
                         write_ply, write_points)

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
    """A trailing unnamed column is the field `scalar`, never labels (it may be intensity or
    alpha): labels need a name."""
    path = tmp_path / "a.npy"
    np.save(path, np.concatenate([p.astype(np.float64) for p in parts], axis=1))
    cloud = read_points(path)
    np.testing.assert_array_equal(cloud.points, XYZ)
    assert cloud.labels is None
    for name, want in (("colors", RGB), ("normals", NRM)):
        got = getattr(cloud, name)
        if name in has:
            np.testing.assert_allclose(got, want, atol=1e-6)
        else:
            assert got is None, name
    if "labels" in has:
        np.testing.assert_array_equal(cloud.fields["scalar"], LAB)
    else:
        assert "scalar" not in cloud.fields


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


def test_structured_npy_sub_array_field_keeps_one_row_per_point(tmp_path):
    """A (3,)-valued column is one field of shape (N, 3) — it was flattened to 3N values,
    which no writer could write — and PLY output splits it into vec_0 … vec_2."""
    table = np.zeros(N, [("x", "f4"), ("y", "f4"), ("z", "f4"), ("vec", "f4", (3,))])
    for i, a in enumerate("xyz"):
        table[a] = XYZ[:, i]
    table["vec"] = np.arange(3 * N, dtype=np.float32).reshape(N, 3)
    np.save(tmp_path / "v.npy", table)
    cloud = read_points(tmp_path / "v.npy")
    np.testing.assert_array_equal(cloud.fields["vec"], table["vec"])
    fields, _ = output_fields(".ply", cloud.fields)
    cloud.fields = fields
    write_ply(tmp_path / "v.ply", cloud)
    back = read_points(tmp_path / "v.ply")
    for j in range(3):
        np.testing.assert_array_equal(back.fields[f"vec_{j}"], table["vec"][:, j])


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
    bad_zip = tmp_path / "z.npz"
    bad_zip.write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(FormatError, match="z.npz: not a readable numpy file"):
        read_points(bad_zip)
    np.savez(bad_zip, points=XYZ, names=np.array([{"a": 1}] * N, dtype=object))
    with pytest.raises(FormatError, match="z.npz: not a readable numpy archive"):
        read_points(bad_zip)  # a member is only loaded (and refused) when read


@pytest.mark.parametrize("colors, normals, labels, width", [
    (None, None, None, 3), (RGB, None, LAB, 7), (RGB, NRM, LAB, 10), (RGB, None, None, 6),
    (RGB, NRM, None, 9), (None, NRM, None, 6), (None, None, LAB, 4),
])
def test_write_npy_round_trip(tmp_path, colors, normals, labels, width):
    """Named columns: labels stay labels, normals without colours stay normals."""
    cloud = PointCloud(XYZ, colors, normals, labels)
    path = tmp_path / "w.npy"
    names = write_npy(path, cloud)
    table = np.load(path)
    assert table.shape == (N,) and len(table.dtype.names) == width == len(names)
    np.testing.assert_array_equal(table["x"], XYZ[:, 0])
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
    with pytest.raises(InputError, match="clash with the columns"):
        write_npy(tmp_path / "x.npy", PointCloud(XYZ, fields={"label": LAB}))
    with pytest.raises(InputError, match="clash with npz keys"):
        write_npz(tmp_path / "x.npz", PointCloud(XYZ, fields={"rgb": LAB}))
    with pytest.raises(InputError, match="supported: .ply .las .laz .npy .npz .txt"):
        write_points(tmp_path / "x.xyz", cloud)
    assert list(tmp_path.iterdir()) == []
    write_npy(tmp_path / "f.npy", cloud)  # fields are named columns too
    np.testing.assert_array_equal(read_points(tmp_path / "f.npy").fields["pred"], LAB)


PRIMARIES = np.eye(3, dtype=np.float32)[np.arange(N) % 3]  # (1,0,0), (0,1,0), (0,0,1), …


@pytest.mark.parametrize("with_labels", [False, True])
def test_unit_length_colours_are_colours(tmp_path, with_labels):
    """Pure primaries have unit length like normals; colours are never negative, so they stay
    colours (6 and 7 columns)."""
    parts = [XYZ, PRIMARIES] + ([LAB[:, None]] if with_labels else [])
    path = tmp_path / "p.npy"
    np.save(path, np.concatenate(parts, axis=1).astype(np.float32))
    cloud = read_points(path)
    assert cloud.normals is None
    np.testing.assert_array_equal(cloud.colors, PRIMARIES)
    if with_labels:
        np.testing.assert_array_equal(cloud.fields["scalar"], LAB)
    # the same through write_npy (colours only) → read_points
    write_npy(path, PointCloud(XYZ, PRIMARIES))
    np.testing.assert_array_equal(read_points(path).colors, PRIMARIES)


@pytest.mark.parametrize("per_file", [np.int64(5), np.array([5]), np.array([[5]])])
def test_npz_per_file_class_id_is_ignored(tmp_path, per_file):
    path = tmp_path / "shape.npz"
    np.savez(path, points=XYZ, label=per_file, name_id=np.int32(3), normals=NRM)
    report = ReadReport()
    cloud = read_points(path, report=report)
    np.testing.assert_array_equal(cloud.points, XYZ)
    np.testing.assert_array_equal(cloud.normals, NRM)
    assert cloud.labels is None and not cloud.fields
    assert "not per-point, ignored: label, name_id" in report.format
    one = tmp_path / "one.npz"  # a one-point cloud: a single label is that point's label
    np.savez(one, points=XYZ[:1], label=np.array([4]))
    np.testing.assert_array_equal(read_points(one).labels, [4])


def test_content_decides_not_the_extension(tmp_path):
    table = np.concatenate([XYZ, LAB[:, None]], axis=1)
    npz_named = tmp_path / "table.npz"
    with open(npz_named, "wb") as f:  # a single .npy array under an .npz name
        np.save(f, table)
    report = ReadReport()
    cloud = read_points(npz_named, report=report)
    np.testing.assert_array_equal(cloud.points, XYZ)
    np.testing.assert_array_equal(cloud.fields["scalar"], LAB)
    assert report.format == f"npy ({N}, 4)"
    npy_named = tmp_path / "archive.npy"
    with open(npy_named, "wb") as f:  # an archive under an .npy name
        np.savez(f, points=XYZ, labels=LAB)
    np.testing.assert_array_equal(read_points(npy_named).labels, LAB)


def test_structured_npy_string_field_is_skipped(tmp_path):
    table = np.zeros(N, [("x", "f4"), ("y", "f4"), ("z", "f4"), ("name", "U4"),
                         ("label", "i2")])
    for i, a in enumerate("xyz"):
        table[a] = XYZ[:, i]
    table["name"], table["label"] = "abc", LAB
    path = tmp_path / "s.npy"
    np.save(path, table)
    cloud = read_points(path)
    np.testing.assert_array_equal(cloud.points, XYZ)
    np.testing.assert_array_equal(cloud.labels, LAB)
    assert cloud.fields == {}  # the string column is not a per-point number
    bad = np.zeros(N, [("x", "U8"), ("y", "f4"), ("z", "f4")])
    np.save(path, bad)
    with pytest.raises(FormatError, match="s.npy: column 'x' holds <U8, not numbers"):
        read_points(path)
