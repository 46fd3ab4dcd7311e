"""`read_points` as a whole: path checks, NaN/Inf policy, empty clouds, LAS via laspy."""

import numpy as np
import pytest

from pointgcn.errors import FormatError, InputError
from pointgcn.io import SUPPORTED, ReadReport, read_points



def raises_one_line(kind, match, path, **kw):
    with pytest.raises(kind, match=match) as e:
        read_points(path, **kw)
    assert "\n" not in str(e.value)
    return str(e.value)


def test_path_problems(tmp_path):
    message = raises_one_line(InputError, "unknown extension '.foo'", tmp_path / "a.foo")
    assert all(ext in message for ext in SUPPORTED)
    raises_one_line(InputError, "unknown extension '\\(none\\)'", tmp_path / "noext")
    raises_one_line(InputError, "no such file", tmp_path / "missing.ply")
    (tmp_path / "dir.ply").mkdir()
    raises_one_line(InputError, "is a directory", tmp_path / "dir.ply")
    for name in ("empty.ply", "empty.xyz", "empty.pcd", "empty.npy", "empty.off"):
        (tmp_path / name).write_bytes(b"")
        raises_one_line(InputError, "file is empty", tmp_path / name)


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf"])
def test_non_finite_rejected_or_dropped(tmp_path, bad):
    path = tmp_path / "n.txt"
    path.write_text(f"0 0 0 1\n1 {bad} 0 2\n2 0 0 3\n3 0 {bad} 4\n")
    raises_one_line(InputError, "2 points have NaN/Inf coordinates; pass drop_invalid=True", path)
    report = ReadReport()
    cloud = read_points(path, drop_invalid=True, report=report)
    np.testing.assert_array_equal(cloud.points[:, 0], [0, 2])
    np.testing.assert_array_equal(cloud.fields["scalar"], [1, 3])
    assert (report.n_read, report.dropped) == (4, 2)


def test_nan_in_binary_ply_and_all_dropped(tmp_path):
    xyz = np.array([[0, 0, 0], [np.nan, 1, 1]], "<f4")
    head = b"ply\nformat binary_little_endian 1.0\nelement vertex 2\nproperty float x\n" \
           b"property float y\nproperty float z\nend_header\n"
    path = tmp_path / "n.ply"
    path.write_bytes(head + xyz.tobytes())
    raises_one_line(InputError, "1 points have NaN/Inf", path)
    assert len(read_points(path, drop_invalid=True)) == 1
    path.write_bytes(head + xyz[[1, 1]].tobytes())
    raises_one_line(InputError, "no points after dropping invalid ones", path, drop_invalid=True)


@pytest.mark.parametrize("name, content", [
    ("zero.ply", b"ply\nformat ascii 1.0\nelement vertex 0\nproperty float x\nproperty float y\n"
                 b"property float z\nend_header\n"),
    ("zero.pcd", b"VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 0\n"
                 b"HEIGHT 1\nPOINTS 0\nDATA binary\n"),
    ("header.csv", b"x,y,z\n"),
])
def test_empty_clouds(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    raises_one_line(InputError, "no points", path)


def test_wrong_content_for_extension(tmp_path):
    path = tmp_path / "really_text.ply"
    path.write_text("1 2 3\n")
    raises_one_line(FormatError, "not a PLY file", path)
    path = tmp_path / "really_ply.pcd"
    path.write_text("ply\nformat ascii 1.0\n")
    raises_one_line(FormatError, "garbled PCD header", path)


def test_las_with_laspy(tmp_path):
    import laspy

    header = laspy.LasHeader(point_format=3, version="1.2")
    header.scales, header.offsets = [0.001] * 3, [100.0, 200.0, 0.0]
    las = laspy.LasData(header)
    a = np.array
    las.x, las.y, las.z = a([100.5, 101.25, 102.0]), a([200.0, 201.5, 199.0]), a([1.0, 2.0, 3.0])
    las.red, las.green, las.blue = a([0, 65535, 65535]), a([0, 0, 32768]), a([65535, 0, 0])
    las.classification, las.intensity = a([2, 6, 9]), a([10, 20, 30])
    path = tmp_path / "a.LAS"
    las.write(str(path))
    cloud = read_points(path)
    np.testing.assert_allclose(cloud.points, [[100.5, 200.0, 1.0], [101.25, 201.5, 2.0],
                                              [102.0, 199.0, 3.0]], atol=1e-4)
    np.testing.assert_allclose(cloud.colors, np.array([[0, 0, 65535], [65535, 0, 0],
                                                       [65535, 32768, 0]]) / 65535, atol=1e-6)
    np.testing.assert_array_equal(cloud.labels, [2, 6, 9])
    assert cloud.label_scheme == "asprs"  # not a model's class ids (io/las.py)
    np.testing.assert_array_equal(cloud.fields["intensity"], [10, 20, 30])
    path.write_bytes(path.read_bytes()[:150])
    raises_one_line(FormatError, "unreadable LAS file", path)


def test_las_all_zero_rgb_is_no_colours(tmp_path):
    """Point format 3 with its colour slots left at 0 (laspy's default, what a scanner without
    a camera writes): no colours and a note, so a colour model refuses it instead of seeing
    black; a cloud with one non-zero value keeps its colours."""
    import laspy

    from pointgcn.engine.harmonise import harmonise
    from pointgcn.models.conventions import Conventions, channels_of

    las = laspy.LasData(laspy.LasHeader(point_format=3, version="1.2"))
    rng = np.random.default_rng(0)
    xyz = rng.uniform(0, 5, (200, 3))
    las.x, las.y, las.z = xyz.T
    path = tmp_path / "nocam.las"
    las.write(str(path))
    report = ReadReport()
    cloud = read_points(path, report=report)
    assert cloud.colors is None
    assert any("all 0" in n and "no colours" in n for n in report.notes)
    conv = Conventions(task="segmentation", units="m", channels=channels_of("segmentation", 9))
    with pytest.raises(InputError, match="trained with colours"):
        harmonise(cloud, conv)
    las.red = np.r_[np.zeros(199), 255].astype(int)
    las.write(str(path))
    report = ReadReport()
    assert read_points(path, report=report).colors is not None and not report.notes


@pytest.mark.parametrize("version, point_format", [
    ("1.2", 0), ("1.2", 1), ("1.2", 2), ("1.2", 3), ("1.3", 4), ("1.3", 5),
    ("1.4", 6), ("1.4", 7), ("1.4", 8), ("1.4", 9), ("1.4", 10)])
@pytest.mark.parametrize("suffix", [".las", ".laz"])
def test_las_versions_formats_extra_bytes(tmp_path, version, point_format, suffix):
    """Every LAS version and point format as laspy writes them, compressed or not, with an
    extra-byte dimension: coordinates, colours where the format has them, ASPRS labels, and
    every other dimension kept as a field."""
    import laspy

    rng = np.random.default_rng(point_format)
    n = 50
    las = laspy.LasData(laspy.LasHeader(point_format=point_format, version=version))
    las.add_extra_dim(laspy.ExtraBytesParams(name="reflectance", type=np.float32))
    xyz = np.round(rng.random((n, 3)) * 20, 3) + [500000.0, 4000000.0, 10.0]
    las.header.offsets, las.header.scales = xyz.min(0), [0.001] * 3
    las.x, las.y, las.z = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    las.classification = rng.integers(0, 20, n)
    las.intensity = rng.integers(0, 60000, n)
    las.return_number, las.number_of_returns = np.ones(n, int), np.full(n, 2)
    las.reflectance = rng.random(n).astype(np.float32)
    has_rgb = "red" in las.point_format.dimension_names
    if has_rgb:
        rgb = rng.integers(0, 65536, (n, 3))
        las.red, las.green, las.blue = rgb.T
    if "gps_time" in las.point_format.dimension_names:
        las.gps_time = rng.random(n) * 1e6
    path = tmp_path / f"tile{suffix}"
    las.write(str(path))
    report = ReadReport()
    cloud = read_points(path, report=report)
    np.testing.assert_allclose(cloud.absolute_points(), xyz, atol=1e-6)
    assert f"las {version} point format {point_format}" in report.format
    np.testing.assert_array_equal(cloud.labels, las.classification)
    assert cloud.label_scheme == "asprs"
    assert (cloud.colors is not None) == has_rgb
    if has_rgb:
        np.testing.assert_allclose(cloud.colors, rgb / 65535, atol=1e-6)
    np.testing.assert_array_equal(cloud.fields["intensity"], las.intensity)
    np.testing.assert_array_equal(cloud.fields["number_of_returns"], 2)
    np.testing.assert_allclose(cloud.fields["reflectance"], las.reflectance)
    if "gps_time" in las.point_format.dimension_names:
        np.testing.assert_array_equal(cloud.fields["gps_time"], las.gps_time)


def test_empty_las_is_one_line(tmp_path):
    import laspy

    laspy.LasData(laspy.LasHeader(point_format=3, version="1.2")).write(str(tmp_path / "e.las"))
    raises_one_line(FormatError, "holds no points", tmp_path / "e.las")


def test_e57_scans_in_the_global_frame(tmp_path):
    """Two scans with their own poses (a translation; a quarter turn about z), colours and
    intensity: one cloud in the file's frame, `scan` and `intensity` fields."""
    import pye57

    rng = np.random.default_rng(0)
    n = 40
    local = rng.random((n, 3)) * [5, 4, 3]
    rgb = rng.integers(0, 256, (n, 3)).astype(np.uint8)
    path = tmp_path / "site.e57"
    e57 = pye57.E57(str(path), mode="w")
    scan = {"cartesianX": local[:, 0], "cartesianY": local[:, 1], "cartesianZ": local[:, 2],
            "colorRed": rgb[:, 0], "colorGreen": rgb[:, 1], "colorBlue": rgb[:, 2],
            "intensity": rng.random(n).astype(np.float32)}
    e57.write_scan_raw(scan, name="a", rotation=np.array([1.0, 0, 0, 0]),
                       translation=np.array([100.0, 0, 0]))
    quarter = np.array([np.cos(np.pi / 4), 0, 0, np.sin(np.pi / 4)])  # w x y z: 90° about z
    e57.write_scan_raw(scan, name="b", rotation=quarter, translation=np.zeros(3))
    e57.close()
    report = ReadReport()
    cloud = read_points(path, report=report)
    world = cloud.absolute_points()
    np.testing.assert_allclose(world[:n], local + [100, 0, 0], atol=1e-6)
    turned = np.stack([-local[:, 1], local[:, 0], local[:, 2]], axis=1)
    np.testing.assert_allclose(world[n:], turned, atol=1e-6)
    np.testing.assert_allclose(cloud.colors[:n], rgb / 255, atol=1e-6)
    np.testing.assert_array_equal(cloud.fields["scan"], np.repeat([0, 1], n))
    assert report.format == "e57, 2 scans" and "intensity" in cloud.fields
    path.write_bytes(path.read_bytes()[:200])
    raises_one_line(FormatError, "unreadable E57 file", path)


def test_e57_coloured_and_intensity_only_scans(tmp_path):
    """A project with an intensity-only scan and a coloured one, as pye57 writes
    them: the coloured scan keeps its colours, the other gets mid grey, a note names it, and
    `scan` keeps each scan's index in the file."""
    import pye57

    rng = np.random.default_rng(1)
    n = 30
    path = tmp_path / "mixed.e57"
    e57 = pye57.E57(str(path), mode="w")
    rgb = rng.integers(0, 256, (n, 3)).astype(np.uint8)

    def scan(k, colours):
        xyz = rng.random((k, 3)) * 4
        s = {"cartesianX": xyz[:, 0], "cartesianY": xyz[:, 1], "cartesianZ": xyz[:, 2],
             "intensity": rng.random(k).astype(np.float32)}
        if colours:
            s.update(colorRed=rgb[:, 0], colorGreen=rgb[:, 1], colorBlue=rgb[:, 2])
        return s

    e57.write_scan_raw(scan(n, False), name="intensity only")
    e57.write_scan_raw(scan(n, True), name="coloured")
    e57.close()
    report = ReadReport()
    cloud = read_points(path, report=report)
    np.testing.assert_array_equal(cloud.fields["scan"], np.repeat([0, 1], n))
    np.testing.assert_allclose(cloud.colors[n:], rgb / 255, atol=1e-6)
    np.testing.assert_array_equal(cloud.colors[:n], np.full((n, 3), 0.5, np.float32))
    assert any("1 of 2 scans have no colours (scan 0" in note and "mid grey" in note
               for note in report.notes), report.notes
    assert np.isfinite(cloud.fields["intensity"]).all()


def test_nan_in_a_float_label_column_is_unlabelled(tmp_path, caplog):
    """CloudCompare writes classes as a float `scalar_label` property and NaN where a point has
    none: those points are unlabelled (−1, which metrics and adaptation skip), with a note; a
    non-integral label still refuses the file."""
    rows = ["0 0 0 2", "1 0 0 nan", "0 1 0 5", "0 0 1 nan"]
    head = ("ply\nformat ascii 1.0\nelement vertex 4\nproperty float x\nproperty float y\n"
            "property float z\nproperty float scalar_label\nend_header\n")
    path = tmp_path / "labels.ply"
    path.write_text(head + "\n".join(rows) + "\n")
    with caplog.at_level("WARNING", logger="pointgcn"):
        cloud = read_points(path)
    np.testing.assert_array_equal(cloud.labels, [2, -1, 5, -1])
    assert "2 of 4 'scalar_label' values are NaN: read as unlabelled" in caplog.text
    path.write_text(head + "\n".join(rows[:3] + ["0 0 1 2.5"]) + "\n")
    raises_one_line(FormatError, "'scalar_label' values are not integers", path)
