"""Georeferenced coordinates (PointCloud.offset) and PLY-safe fields (`ply_safe_fields`).

A UTM-like room (x ≈ 500 000, y ≈ 4 000 000, mm-spaced points) loses up to 0.125 m in float32
and many points collapse onto one position; every reader must keep its coordinates, the
writers must give them back, and small clouds must stay exactly as before.
"""
import dataclasses
import sys

import numpy as np
import pytest

from pointgcn.errors import InputError
from pointgcn.io import (PointCloud, ply_safe_fields, read_points, write_npy, write_npz,
                         write_ply)
from pointgcn.io.cloud import LOCAL_LIMIT, local_frame

ORIGIN = np.array([500000.0, 4000000.0, 100.0])


def utm_room(n=2000, seed=0):
    """n mm-rounded float64 points in a 4 × 4 × 3 m room at ORIGIN, with pairs 1 mm apart."""
    rng = np.random.default_rng(seed)
    local = np.round(rng.uniform([0.002, 0.002, 0.002], [4, 4, 3], (n, 3)), 3)
    local[1::2] = local[::2] + [0.001, 0.0, 0.0]        # neighbours 1 mm apart in x
    xyz = local + ORIGIN
    assert len(np.unique(xyz.astype(np.float32)[:, :2], axis=0)) < 0.9 * n  # float32 collapses
    return xyz


def distinct(a):
    return len(np.unique(a, axis=0))


def ply_double(path, xyz, fmt="binary_little_endian"):
    head = (f"ply\nformat {fmt} 1.0\nelement vertex {len(xyz)}\nproperty double x\n"
            "property double y\nproperty double z\nend_header\n").encode()
    if fmt == "ascii":
        body = "".join(f"{x:.3f} {y:.3f} {z:.3f}\n" for x, y, z in xyz).encode()
    else:
        body = xyz.astype("<f8").tobytes()
    path.write_bytes(head + body)


def pcd_double(path, xyz, mode):
    head = ("VERSION 0.7\nFIELDS x y z\nSIZE 8 8 8\nTYPE F F F\nCOUNT 1 1 1\n"
            f"WIDTH {len(xyz)}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {len(xyz)}\n"
            f"DATA {mode}\n").encode()
    body = ("".join(f"{x:.3f} {y:.3f} {z:.3f}\n" for x, y, z in xyz).encode() if mode == "ascii"
            else xyz.astype("<f8").tobytes())
    path.write_bytes(head + body)


WRITERS = {
    "binary.ply": lambda p, xyz: ply_double(p, xyz),
    "ascii.ply": lambda p, xyz: ply_double(p, xyz, "ascii"),
    "room.xyz": lambda p, xyz: np.savetxt(p, xyz, fmt="%.3f"),
    "room.csv": lambda p, xyz: np.savetxt(p, xyz, fmt="%.3f", delimiter=",", header="X,Y,Z",
                                          comments="//"),
    "ascii.pcd": lambda p, xyz: pcd_double(p, xyz, "ascii"),
    "binary.pcd": lambda p, xyz: pcd_double(p, xyz, "binary"),
    "room.npy": lambda p, xyz: np.save(p, xyz),
    "room.npz": lambda p, xyz: np.savez(p, points=xyz),
}


def check_local(cloud, xyz, atol=1e-5):
    assert cloud.points.dtype == np.float32 and cloud.offset.dtype == np.float64
    np.testing.assert_array_equal(cloud.offset, ORIGIN)   # bbox minimum, rounded down
    assert cloud.has_offset
    assert 0 <= cloud.points.min() and cloud.points.max() < 5   # local, small
    assert distinct(cloud.points) == distinct(xyz)
    assert distinct(cloud.points[:, :2]) == distinct(xyz[:, :2])
    np.testing.assert_allclose(cloud.absolute_points(), xyz, rtol=0, atol=atol)


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_utm_cloud_keeps_its_coordinates_through_every_reader_and_writer(tmp_path, name):
    xyz = utm_room()
    WRITERS[name](tmp_path / name, xyz)
    cloud = read_points(tmp_path / name)
    check_local(cloud, xyz)
    for binary in (True, False):
        out = tmp_path / f"out_{binary}.ply"
        write_ply(out, cloud, binary=binary)
        head = out.read_bytes().split(b"end_header")[0].decode()
        assert "property double x\nproperty double y\nproperty double z" in head
        back = read_points(out)
        check_local(back, xyz, atol=1e-4)
        np.testing.assert_array_equal(back.points, cloud.points)
    for write, suffix in ((write_npy, ".npy"), (write_npz, ".npz")):
        write(tmp_path / f"out{suffix}", cloud)
        check_local(read_points(tmp_path / f"out{suffix}"), xyz, atol=1e-4)
    assert np.load(tmp_path / "out.npy")["x"].dtype == np.float64


def test_subset_and_replace_keep_the_offset(tmp_path):
    xyz = utm_room(200)
    np.save(tmp_path / "a.npy", xyz)
    cloud = read_points(tmp_path / "a.npy")
    part = cloud.subset(np.arange(10))
    np.testing.assert_array_equal(part.offset, ORIGIN)
    np.testing.assert_allclose(part.absolute_points(), xyz[:10], rtol=0, atol=1e-5)
    out = dataclasses.replace(cloud, fields={"pred": np.zeros(len(cloud), np.int32)})
    write_ply(tmp_path / "pred.ply", out)
    back = read_points(tmp_path / "pred.ply")
    np.testing.assert_allclose(back.absolute_points(), xyz, rtol=0, atol=1e-4)
    np.testing.assert_array_equal(back.fields["pred"], 0)


def test_offset_ignores_dropped_invalid_points(tmp_path):
    xyz = utm_room(100)
    xyz[5] = [np.nan, 0, 0]
    xyz[6] = [np.inf, -np.inf, 0]
    np.savetxt(tmp_path / "a.xyz", xyz, fmt="%.3f")
    with pytest.raises(InputError, match="NaN/Inf"):
        read_points(tmp_path / "a.xyz")
    cloud = read_points(tmp_path / "a.xyz", drop_invalid=True)
    keep = np.isfinite(xyz).all(axis=1)
    check_local(cloud, xyz[keep])


def test_las_scaled_coordinates_reach_read_points_in_float64(tmp_path):
    """laspy's scaled x y z are float64 at mm resolution; read_las must not round them, and
    PLY written back keeps them."""
    import laspy

    xyz = utm_room()
    header = laspy.LasHeader(point_format=3, version="1.2")
    header.scales, header.offsets = [0.001] * 3, list(ORIGIN)
    las = laspy.LasData(header)
    las.x, las.y, las.z = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    las.classification = np.full(len(xyz), 2)
    las.write(str(tmp_path / "a.las"))
    cloud = read_points(tmp_path / "a.las")
    check_local(cloud, xyz)
    assert cloud.label_scheme == "asprs" and (cloud.labels == 2).all()
    write_ply(tmp_path / "a.ply", cloud)
    back = read_points(tmp_path / "a.ply")
    check_local(back, xyz, atol=1e-4)
    assert back.labels is None and (back.fields["classification"] == 2).all()


def test_utm_mesh_sampled_in_float64(tmp_path):
    """A 4 m square at UTM coordinates: samples lie on it (float32 sampling would put them up
    to 0.25 m off), vertices come back exactly."""
    corners = ORIGIN + np.array([[0, 0, 0], [4, 0, 0], [4, 4, 0], [0, 4, 0]]) \
        + [0.123, 0.457, 0.789]
    lines = ["OFF", "4 2 0"] + [f"{x:.3f} {y:.3f} {z:.3f}" for x, y, z in corners] \
        + ["3 0 1 2", "3 0 2 3"]
    path = tmp_path / "square.off"
    path.write_text("\n".join(lines) + "\n")
    cloud = read_points(path, n_points=500, seed=1)
    np.testing.assert_array_equal(cloud.offset, ORIGIN)
    world = cloud.absolute_points()
    np.testing.assert_allclose(world[:, 2], corners[0, 2], rtol=0, atol=1e-6)
    assert np.all(world[:, :2] >= corners[0, :2] - 1e-6)
    assert np.all(world[:, :2] <= corners[2, :2] + 1e-6)
    assert distinct(cloud.points) == 500
    np.testing.assert_allclose(cloud.normals, np.tile([0, 0, 1], (500, 1)), atol=1e-6)
    vertices = read_points(path, as_mesh=False)
    np.testing.assert_allclose(vertices.absolute_points(), corners, rtol=0, atol=1e-6)


# ------------------------------------------------------------ small clouds: no change at all

def small_cloud(n=40, seed=0, scale=5.0):
    rng = np.random.default_rng(seed)
    return PointCloud(rng.uniform(-scale, scale, (n, 3)).astype(np.float32),
                      labels=rng.integers(0, 5, n))


def test_small_cloud_has_no_offset_and_todays_files(tmp_path):
    cloud = small_cloud()
    np.testing.assert_array_equal(cloud.offset, [0, 0, 0])
    assert not cloud.has_offset
    head = ("ply\nformat {} 1.0\ncomment written by pointgcn\nelement vertex 40\n"
            "property float x\nproperty float y\nproperty float z\nproperty int label\n"
            "end_header\n")
    table = np.empty(40, [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("label", "<i4")])
    for i, axis in enumerate("xyz"):
        table[axis] = cloud.points[:, i]
    table["label"] = cloud.labels
    write_ply(tmp_path / "b.ply", cloud)
    assert (tmp_path / "b.ply").read_bytes() == \
        head.format("binary_little_endian").encode() + table.tobytes()
    write_ply(tmp_path / "a.ply", cloud, binary=False)
    rows = "".join(f"{p[0]:.9g} {p[1]:.9g} {p[2]:.9g} {lab}\n"
                   for p, lab in zip(cloud.points.astype(np.float64), cloud.labels))
    assert (tmp_path / "a.ply").read_text() == head.format("ascii") + rows
    write_npy(tmp_path / "c.npy", cloud)
    saved = np.load(tmp_path / "c.npy")
    assert saved["x"].dtype == np.float32
    np.testing.assert_array_equal(np.stack([saved[a] for a in "xyz"], 1), cloud.points)
    for name in ("b.ply", "a.ply", "c.npy"):
        back = read_points(tmp_path / name)
        assert not back.has_offset and back.points.dtype == np.float32
        np.testing.assert_array_equal(back.points, cloud.points)


def test_small_text_cloud_reads_as_float32_of_its_values(tmp_path):
    xyz = np.round(np.random.default_rng(3).uniform(-100, 100, (30, 3)), 6)
    np.savetxt(tmp_path / "a.txt", xyz, fmt="%.6f")
    cloud = read_points(tmp_path / "a.txt")
    assert not cloud.has_offset
    np.testing.assert_array_equal(cloud.points, xyz.astype(np.float32))


@pytest.mark.parametrize("coordinate, shifted", [
    (LOCAL_LIMIT - 0.5, False), (-(LOCAL_LIMIT - 0.5), False), (LOCAL_LIMIT, True),
    (-3000.25, True), (1e4, True)])
def test_threshold(coordinate, shifted):
    xyz = np.array([[0.0, 1.0, 2.0], [coordinate, 1.5, 2.5]])
    points, offset = local_frame(xyz)
    assert bool(np.any(offset)) == shifted
    if shifted:
        np.testing.assert_array_equal(offset, np.floor(xyz.min(axis=0)))
    np.testing.assert_allclose(points + offset, xyz, rtol=0, atol=1.3e-4)
    assert points.dtype == np.float32


def test_threshold_bounds_float32_rounding():
    """Below LOCAL_LIMIT float32 rounds by ≤ 0.1 mm; just above it, by more."""
    below = np.float64(LOCAL_LIMIT) - 2.0 ** -13 * 0.999
    assert abs(float(np.float32(below)) - below) <= 1e-4
    above = np.float64(LOCAL_LIMIT) + 2.0 ** -13 * 0.999
    assert abs(float(np.float32(above)) - above) > 1e-4


# ------------------------------------------------------------ ply_safe_fields

def test_cloudcompare_scalar_field_round_trips(tmp_path):
    path = tmp_path / "cc.csv"
    rows = [f"{i * 0.5},{i * 0.25},1.5,{10 * i},20,30,{i * 0.125}" for i in range(6)]
    path.write_text("//X,Y,Z,R,G,B,Scalar field\n" + "\n".join(rows) + "\n")
    cloud = read_points(path)
    assert list(cloud.fields) == ["Scalar field"]
    out = dataclasses.replace(cloud, fields={**cloud.fields, "pred": np.arange(6, dtype=np.int32)})
    with pytest.raises(InputError, match="'Scalar field' cannot be a PLY property"):
        write_ply(tmp_path / "raw.ply", out)          # the library function still refuses
    fields, notes = ply_safe_fields(out.fields)
    assert list(fields) == ["Scalar_field", "pred"]
    assert len(notes) == 1 and "'Scalar field'" in notes[0] and "'Scalar_field'" in notes[0]
    write_ply(tmp_path / "safe.ply", dataclasses.replace(out, fields=fields))
    back = read_points(tmp_path / "safe.ply")
    np.testing.assert_array_equal(back.fields["Scalar_field"], np.arange(6) * 0.125)
    np.testing.assert_array_equal(back.fields["pred"], np.arange(6))
    np.testing.assert_array_equal(back.points, cloud.points)
    assert "property float Scalar_field" in (tmp_path / "safe.ply").read_text(errors="replace")


def test_pcd_count_3_field_is_split(tmp_path):
    n = 300
    rng = np.random.default_rng(2)
    rec = np.empty(n, [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("hist", "<f4", (3,))])
    for axis in "xyz":
        rec[axis] = rng.normal(size=n)
    rec["hist"] = rng.random((n, 3))
    head = ("VERSION 0.7\nFIELDS x y z hist\nSIZE 4 4 4 4\nTYPE F F F F\nCOUNT 1 1 1 3\n"
            f"WIDTH {n}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {n}\nDATA binary\n")
    path = tmp_path / "h.pcd"
    path.write_bytes(head.encode() + rec.tobytes())
    cloud = read_points(path)
    assert cloud.fields["hist"].shape == (n, 3)
    with pytest.raises(InputError, match="'hist' has shape \\(300, 3\\)"):
        write_ply(tmp_path / "raw.ply", cloud)
    fields, notes = ply_safe_fields(cloud.fields)
    assert list(fields) == ["hist_0", "hist_1", "hist_2"]
    assert len(notes) == 1 and "hist_0, hist_1, hist_2" in notes[0]
    for binary in (True, False):
        write_ply(tmp_path / "safe.ply", dataclasses.replace(cloud, fields=fields), binary=binary)
        back = read_points(tmp_path / "safe.ply")
        for i in range(3):
            np.testing.assert_array_equal(back.fields[f"hist_{i}"], rec["hist"][:, i])


def test_ply_safe_fields_rules(tmp_path):
    n = 4
    fields = {"pred": np.arange(n), "Scalar field": np.ones(n, np.float32),
              "Scalar_field": np.zeros(n), "x": np.ones(n), "2nd": np.ones(n),
              "a-b c": np.ones((n, 2, 2)), "gps": np.array([2**40, 0, 1, 2]),
              "flag": np.array([True, False, True, False]),
              "text": np.array(["a", "b", "c", "d"])}
    safe, notes = ply_safe_fields(fields)
    assert list(safe) == ["pred", "Scalar_field_2", "Scalar_field", "x_2", "_2nd",
                          "a_b_c_0", "a_b_c_1", "a_b_c_2", "a_b_c_3", "gps", "flag"]
    assert safe["gps"].dtype == np.float64 and safe["pred"] is fields["pred"]
    assert len(notes) == 6 and any("'text' dropped" in m for m in notes)
    assert all("\n" not in m for m in notes)
    write_ply(tmp_path / "f.ply", PointCloud(np.zeros((n, 3), np.float32), fields=safe))
    back = read_points(tmp_path / "f.ply")
    assert set(safe) <= set(back.fields)
    np.testing.assert_array_equal(back.fields["gps"], fields["gps"])
    np.testing.assert_array_equal(back.fields["a_b_c_3"], 1.0)
    assert ply_safe_fields(safe) == (safe, [])      # already safe: unchanged, nothing said
