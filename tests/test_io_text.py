"""Delimited text clouds (.xyz .txt .csv .pts): column rules, headers, bad lines, Open3D."""
import numpy as np
import open3d as o3d
import pytest

from pointgcn.errors import FormatError
from pointgcn.io import read_points

rng = np.random.default_rng(0)
XYZ = np.round(rng.uniform(-10, 10, (20, 3)), 4).astype(np.float32)
RGB8 = rng.integers(0, 256, (20, 3))
LABEL = rng.integers(0, 13, 20)
NORMAL = rng.normal(size=(20, 3))
NORMAL /= np.linalg.norm(NORMAL, axis=1, keepdims=True)


def write(path, table, sep=" ", header=None, fmt="%.9g"):
    lines = [] if header is None else [header]
    lines += [sep.join(fmt % v for v in row) for row in table]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_xyz_matches_open3d(tmp_path):
    path = write(tmp_path / "a.xyz", XYZ)
    cloud = read_points(path)
    np.testing.assert_array_equal(cloud.points, XYZ)
    assert cloud.colors is None and cloud.labels is None
    np.testing.assert_allclose(np.asarray(o3d.io.read_point_cloud(str(path)).points), XYZ,
                               atol=1e-6)


@pytest.mark.parametrize("suffix, sep", [(".txt", " "), (".csv", ","), (".TXT", "\t"),
                                         (".csv", ";"), (".csv", ", ")])
def test_column_rule(tmp_path, suffix, sep):
    seven = np.c_[XYZ, RGB8, LABEL]
    cloud = read_points(write(tmp_path / f"seven{suffix}", seven, sep))
    np.testing.assert_array_equal(cloud.points, XYZ)
    np.testing.assert_allclose(cloud.colors, RGB8 / 255.0, atol=1e-7)
    assert cloud.labels is None  # an unnamed column is never labels (io/columns.py)
    np.testing.assert_array_equal(cloud.fields["scalar"], LABEL)
    four = read_points(write(tmp_path / f"four{suffix}", np.c_[XYZ, LABEL], sep))
    assert four.labels is None
    np.testing.assert_array_equal(four.fields["scalar"], LABEL)
    scalar = read_points(write(tmp_path / f"scal{suffix}", np.c_[XYZ, LABEL + 0.5], sep))
    assert scalar.labels is None
    np.testing.assert_array_equal(scalar.fields["scalar"], LABEL + 0.5)
    unit = read_points(write(tmp_path / f"unit{suffix}", np.c_[XYZ, RGB8 / 255.0], sep))
    np.testing.assert_allclose(unit.colors, RGB8 / 255.0, atol=1e-7)
    normals = read_points(write(tmp_path / f"nrm{suffix}", np.c_[XYZ, NORMAL], sep))
    assert normals.colors is None
    np.testing.assert_allclose(normals.normals, NORMAL, atol=1e-6)


def test_header_names_columns(tmp_path):
    """ModelNet40's normal_resampled txt (x,y,z,nx,ny,nz) named by a header; CloudCompare's
    `//X,Y,Z,R,G,B` header; a non-naming title line is just skipped."""
    named = read_points(write(tmp_path / "n.csv", np.c_[XYZ, LABEL, NORMAL], ",",
                              header="x,y,z,class,nx,ny,nz"))
    np.testing.assert_allclose(named.normals, NORMAL, atol=1e-6)
    np.testing.assert_array_equal(named.labels, LABEL)
    cc = read_points(write(tmp_path / "cc.txt", np.c_[XYZ, RGB8], ",", header="//X,Y,Z,R,G,B"))
    np.testing.assert_allclose(cc.colors, RGB8 / 255.0, atol=1e-7)
    titled = read_points(write(tmp_path / "t.xyz", XYZ, header="scan of room 1"))
    np.testing.assert_array_equal(titled.points, XYZ)


def test_comments_and_blank_lines(tmp_path):
    path = tmp_path / "c.xyz"
    path.write_text("# exported\n\n1 2 3\n\n# mid\n4 5 6\n")
    np.testing.assert_array_equal(read_points(path).points, [[1, 2, 3], [4, 5, 6]])


def test_pts_published_layout_matches_open3d(tmp_path):
    intensity = rng.integers(-2048, 2048, 20)
    path = tmp_path / "scan.pts"
    path.write_text("20\n" + "".join(
        f"{x:.4f} {y:.4f} {z:.4f} {i} {r} {g} {b}\n"
        for (x, y, z), i, (r, g, b) in zip(XYZ, intensity, RGB8)))
    cloud = read_points(path)
    np.testing.assert_array_equal(cloud.points, XYZ)
    np.testing.assert_allclose(cloud.colors, RGB8 / 255.0, atol=1e-7)
    np.testing.assert_array_equal(cloud.fields["intensity"], intensity)
    theirs = o3d.io.read_point_cloud(str(path))
    np.testing.assert_allclose(np.asarray(theirs.points), XYZ, atol=1e-6)
    np.testing.assert_allclose(np.asarray(theirs.colors), cloud.colors, atol=1e-6)
    path.write_text("21\n" + path.read_text().split("\n", 1)[1])
    with pytest.raises(FormatError, match="first line says 21 points, file has 20"):
        read_points(path)


@pytest.mark.parametrize("text, match", [
    ("1 2 3\n4 5 6\n7 8 x\n", "line 3: non-numeric"),
    ("x y z\n1 2 3\n4 5\n", "line 3: 2 columns, expected 3"),
    ("1,2,3\n4,5,6,\n", "line 2: non-numeric"),
    ("1 2 3 4 5\n", r"1x5 values; expected N rows of 3 \(x y z\)"),
    ("0 0 0 -5 0 0\n", "colour values outside"),
    ("1 2 3 0 0 0\n4 5 6 0 0 0 1\n", "line 2: 7 columns, expected 6"),
    ("title only\n", "no points"),
])
def test_bad_text(tmp_path, text, match):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(FormatError, match=match) as e:
        read_points(path)
    assert "\n" not in str(e.value) and str(path) in str(e.value)
