"""PCD reader: files written by hand per the PCL spec, compared with Open3D's reading of them."""
import struct

import numpy as np
import open3d as o3d
import pytest

from pointgcn.errors import FormatError, InputError
from pointgcn.io import ReadReport, read_points

N = 12


def data(seed=0):
    rng = np.random.default_rng(seed)
    normals = rng.normal(size=(N, 3))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    return dict(xyz=rng.uniform(-3, 3, (N, 3)).astype(np.float32),
                rgb=rng.integers(0, 256, (N, 3)),
                normal=normals.astype(np.float32),
                label=rng.integers(0, 13, N), intensity=rng.integers(0, 60000, N),
                hist=rng.random((N, 3)).astype(np.float32))


def packed(rgb):
    return (rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]


def header(fields, sizes, types, counts, mode, n=N, width=None, height=1):
    width = n if width is None else width
    return (f"# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\nFIELDS {' '.join(fields)}\n"
            f"SIZE {' '.join(sizes)}\nTYPE {' '.join(types)}\nCOUNT {' '.join(counts)}\n"
            f"WIDTH {width}\nHEIGHT {height}\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {n}\n"
            f"DATA {mode}\n").encode()


def ascii_pcd(d, rgb_type="U"):
    head = header(["x", "y", "z", "rgb", "normal_x", "normal_y", "normal_z", "label", "intensity"],
                  ["4"] * 8 + ["2"], ["F", "F", "F", rgb_type, "F", "F", "F", "U", "U"],
                  ["1"] * 9, "ascii")
    rgb = packed(d["rgb"])
    lines = [" ".join([*(repr(float(v)) for v in d["xyz"][i]), str(int(rgb[i])),
                       *(repr(float(v)) for v in d["normal"][i]), str(d["label"][i]),
                       str(d["intensity"][i])]) for i in range(N)]
    return head + ("\n".join(lines) + "\n").encode()


def binary_pcd(d):
    """rgb as PCL's float whose bits are 0x00RRGGBB, a 4-byte padding field, a COUNT-3 field."""
    head = header(["x", "y", "z", "_", "rgb", "normal_x", "normal_y", "normal_z", "label", "hist"],
                  ["4", "4", "4", "1", "4", "4", "4", "4", "4", "4"],
                  ["F", "F", "F", "U", "F", "F", "F", "F", "U", "F"],
                  ["1", "1", "1", "4", "1", "1", "1", "1", "1", "3"], "binary")
    rgb = packed(d["rgb"])
    body = b"".join(struct.pack("<3f4x", *d["xyz"][i])
                    + struct.pack("<f", struct.unpack("<f", struct.pack("<I", int(rgb[i])))[0])
                    + struct.pack("<3fI3f", *d["normal"][i], d["label"][i], *d["hist"][i])
                    for i in range(N))
    return head + body


def check(cloud, d):
    np.testing.assert_array_equal(cloud.points, d["xyz"])
    np.testing.assert_allclose(cloud.colors, d["rgb"] / 255.0, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(cloud.normals, d["normal"])
    np.testing.assert_array_equal(cloud.labels, d["label"])


def compare_open3d(path, cloud):
    theirs = o3d.io.read_point_cloud(str(path))
    assert len(theirs.points) == len(cloud)
    np.testing.assert_allclose(np.asarray(theirs.points), cloud.points, rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.asarray(theirs.colors), cloud.colors, rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.asarray(theirs.normals), cloud.normals, rtol=0, atol=1e-6)


def test_ascii(tmp_path):
    d = data()
    path = tmp_path / "a.pcd"
    path.write_bytes(ascii_pcd(d))
    report = ReadReport()
    cloud = read_points(path, report=report)
    check(cloud, d)
    np.testing.assert_array_equal(cloud.fields["intensity"], d["intensity"])
    assert report.format == "pcd ascii"
    compare_open3d(path, cloud)


def test_ascii_float_rgb_written_as_integer_by_pcl(tmp_path):
    """PCL writes a TYPE F rgb column in ascii as the packed integer (alpha 255 would make the
    float NaN); Open3D reads it as a float instead, so compare with the known colours only."""
    d = data(1)
    path = tmp_path / "pcl.pcd"
    path.write_bytes(ascii_pcd(d, rgb_type="F"))
    check(read_points(path), d)


def test_binary_with_padding_and_count(tmp_path):
    d = data(2)
    path = tmp_path / "b.pcd"
    path.write_bytes(binary_pcd(d))
    cloud = read_points(path)
    check(cloud, d)
    np.testing.assert_array_equal(cloud.fields["hist"], d["hist"])
    assert sorted(cloud.fields) == ["hist"]
    compare_open3d(path, cloud)


def test_binary_compressed_written_by_open3d(tmp_path):
    """Repeated colours/normals make LZF use back-references, overlapping ones included."""
    rng = np.random.default_rng(3)
    n = 300
    pcd = o3d.geometry.PointCloud()
    pcd.points = o3d.utility.Vector3dVector(rng.normal(size=(n, 3)).astype(np.float32))
    pcd.colors = o3d.utility.Vector3dVector(np.repeat(rng.integers(0, 256, (3, 3)), 100, 0) / 255)
    pcd.normals = o3d.utility.Vector3dVector(np.tile([[0.0, 0.0, 1.0]], (n, 1)))
    path = tmp_path / "c.pcd"
    assert o3d.io.write_point_cloud(str(path), pcd, compressed=True)
    assert b"DATA binary_compressed" in path.read_bytes()[:400]
    report = ReadReport()
    cloud = read_points(path, report=report)
    assert report.format == "pcd binary_compressed"
    np.testing.assert_array_equal(cloud.points, np.asarray(pcd.points).astype(np.float32))
    np.testing.assert_allclose(cloud.colors, np.asarray(pcd.colors), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(cloud.normals, np.asarray(pcd.normals))
    compare_open3d(path, cloud)
    raw = path.read_bytes()
    path.write_bytes(raw[:-10])
    with pytest.raises(FormatError, match="truncated|corrupt"):
        read_points(path)


def test_organized_cloud_with_nan_points(tmp_path):
    d = data(4)
    d["xyz"][[2, 5, 7]] = np.nan
    path = tmp_path / "org.pcd"
    path.write_bytes(binary_pcd(d).replace(b"WIDTH 12\nHEIGHT 1", b"WIDTH 4\nHEIGHT 3"))
    with pytest.raises(InputError,
                       match="3 points have NaN/Inf coordinates; pass drop_invalid=True"):
        read_points(path)
    report = ReadReport()
    cloud = read_points(path, drop_invalid=True, report=report)
    assert len(cloud) == 9 and report.dropped == 3 and report.n_read == 12
    keep = np.setdiff1d(np.arange(N), [2, 5, 7])
    np.testing.assert_array_equal(cloud.labels, d["label"][keep])


@pytest.mark.parametrize("mutate, match", [
    (lambda b: b[:-7], "truncated"),
    (lambda b: b.replace(b"POINTS 12", b"POINTS 11"), "WIDTH"),
    (lambda b: b.replace(b"DATA binary", b"DATA binarry"), "unknown PCD DATA"),
    (lambda b: b.replace(b"DATA binary\n", b""), "no DATA line"),
    (lambda b: b.replace(b"TYPE F F F U", b"TYPE F F Q U"), "bad SIZE/TYPE/COUNT"),
    (lambda b: b.replace(b"SIZE 4 4 4 1", b"SIZE 4 4 1"), "lengths differ"),
    (lambda b: b.replace(b"VERSION 0.7", b"VERSOIN 0.7"), "garbled PCD header"),
])
def test_broken_binary(tmp_path, mutate, match):
    path = tmp_path / "bad.pcd"
    path.write_bytes(mutate(binary_pcd(data())))
    with pytest.raises(FormatError, match=match) as e:
        read_points(path)
    assert "\n" not in str(e.value) and str(path) in str(e.value)


def test_broken_ascii(tmp_path):
    good = ascii_pcd(data())
    path = tmp_path / "bad.pcd"
    path.write_bytes(good.rsplit(b"\n", 2)[0] + b"\n")
    with pytest.raises(FormatError, match="says 12 points, file has 11 rows"):
        read_points(path)
    lines = good.split(b"\n")
    lines[13] = b"1 2 3"
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(FormatError, match="line 14: 3 values, expected 9"):
        read_points(path)


def _pcd_head(fields, size, kind, n, data, version="0.7"):
    count = " ".join(["1"] * len(fields.split()))
    return (f"# .PCD v{version} - Point Cloud Data file format\nVERSION {version}\n"
            f"FIELDS {fields}\nSIZE {size}\nTYPE {kind}\nCOUNT {count}\nWIDTH {n}\nHEIGHT 1\n"
            f"VIEWPOINT 0 0 0 1 0 0 0\nPOINTS {n}\nDATA {data}\n")


def test_what_real_writers_produce(tmp_path, capsys):
    """PDAL's comma-separated ascii, PCL-readable bytes after the last point (a note, not an
    error), VERSION .5, double x y z, upper-case X Y Z; no coordinates is one line."""
    from apps.cli import main
    from pointgcn.errors import FormatError
    from pointgcn.io import ReadReport

    xyz = np.random.default_rng(0).random((6, 3))
    rows = lambda sep: "\n".join(sep.join(f"{v:.6f}" for v in r) for r in xyz) + "\n"  # noqa
    files = {
        "comma": _pcd_head("x y z", "4 4 4", "F F F", 6, "ascii") + rows(","),
        "v5": _pcd_head("x y z", "4 4 4", "F F F", 6, "ascii", ".5") + rows(" "),
        "upper": _pcd_head("X Y Z", "4 4 4", "F F F", 6, "ascii") + rows(" "),
    }
    for name, text in files.items():
        (tmp_path / f"{name}.pcd").write_text(text)
    (tmp_path / "double.pcd").write_bytes(
        _pcd_head("x y z", "8 8 8", "F F F", 6, "binary").encode() + xyz.astype("<f8").tobytes())
    (tmp_path / "trailing.pcd").write_bytes(
        _pcd_head("x y z", "4 4 4", "F F F", 6, "binary").encode()
        + xyz.astype("<f4").tobytes() + b"\x00" * 7)
    for name in ("comma", "v5", "upper", "double", "trailing"):
        report = ReadReport()
        cloud = read_points(tmp_path / f"{name}.pcd", report=report)
        np.testing.assert_allclose(cloud.points, xyz, atol=1e-6 if name != "double" else 1e-7)
        assert bool(report.notes) == (name == "trailing"), (name, report.notes)
    assert main(["data", "info", str(tmp_path / "trailing.pcd")]) == 0
    err = capsys.readouterr().err
    assert "note:" in err and "7 bytes after the last of the 6 points" in err
    (tmp_path / "none.pcd").write_text(_pcd_head("a b c", "4 4 4", "F F F", 6, "ascii")
                                       + rows(" "))
    with pytest.raises(FormatError, match="no x y z columns"):
        read_points(tmp_path / "none.pcd")


@pytest.mark.parametrize("make", [ascii_pcd, binary_pcd])
def test_header_without_width_height_as_pcl(tmp_path, make):
    """PCL reads a header with no WIDTH/HEIGHT lines as an unorganised cloud (width = POINTS,
    height = 1); so do we, point for point the same as the full header."""
    d = data()
    full = make(d)
    path = tmp_path / "full.pcd"
    path.write_bytes(full)
    short = tmp_path / "short.pcd"
    short.write_bytes(full.replace(f"WIDTH {N}\nHEIGHT 1\n".encode(), b""))
    assert b"WIDTH" not in short.read_bytes() and b"HEIGHT" not in short.read_bytes()
    check(read_points(short), d)
    np.testing.assert_array_equal(read_points(short).points, read_points(path).points)
    no_points = tmp_path / "no_points.pcd"  # POINTS is then the only count: still required
    no_points.write_bytes(short.read_bytes().replace(f"POINTS {N}\n".encode(), b""))
    with pytest.raises(FormatError, match="WIDTH/HEIGHT/POINTS"):
        read_points(no_points)


def test_ascii_points_zero_is_one_clean_error(tmp_path):
    path = tmp_path / "empty.pcd"
    path.write_bytes(header(["x", "y", "z"], ["4"] * 3, ["F"] * 3, ["1"] * 3, "ascii", n=0))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "input contained no data" warning fails this
        with pytest.raises(InputError, match="no points") as e:
            read_points(path)
    assert "\n" not in str(e.value)
