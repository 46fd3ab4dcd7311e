"""Mesh sampling: OFF (incl. ModelNet's glued header), OBJ, STL and PLY faces."""
import struct

import numpy as np
import pytest
import trimesh

from pointgcn.errors import FormatError, InputError
from pointgcn.io import ReadReport, read_points

CUBE_V = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0],
                   [0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]], float)
CUBE_QUADS = [[0, 3, 2, 1], [4, 5, 6, 7], [0, 1, 5, 4], [2, 3, 7, 6], [1, 2, 6, 5], [0, 4, 7, 3]]
CUBE_TRIS = [t for q in CUBE_QUADS for t in ([q[0], q[1], q[2]], [q[0], q[2], q[3]])]


def off_text(vertices, faces, glued=False):
    counts = f"{len(vertices)} {len(faces)} 0"
    head = f"OFF{counts}\n" if glued else f"OFF\n{counts}\n"
    return head + "".join(" ".join(map(repr, map(float, v))) + "\n" for v in vertices) + \
        "".join(f"{len(f)} " + " ".join(map(str, f)) + "\n" for f in faces)


def assert_on_unit_cube(cloud):
    """Every sample lies on a face (a coordinate at 0 or 1) and its normal points out of it."""
    p, n = cloud.points.astype(np.float64), cloud.normals.astype(np.float64)
    assert np.all(p > -1e-6) and np.all(p < 1 + 1e-6)
    axis = np.argmax(np.abs(n), axis=1)
    np.testing.assert_allclose(np.abs(n[np.arange(len(n)), axis]), 1.0, atol=1e-6)
    wall = np.where(n[np.arange(len(n)), axis] > 0, 1.0, 0.0)
    np.testing.assert_allclose(p[np.arange(len(p)), axis], wall, atol=1e-6)


@pytest.mark.parametrize("glued", [True, False])
def test_off_including_modelnet_glued_header(tmp_path, glued):
    path = tmp_path / "chair_0001.off"
    path.write_text(off_text(CUBE_V, CUBE_TRIS, glued=glued))
    report = ReadReport()
    cloud = read_points(path, n_points=1000, seed=1, report=report)
    assert len(cloud) == 1000 and report.n_faces == 12 and report.format == "mesh off"
    assert_on_unit_cube(cloud)
    again = read_points(path, n_points=1000, seed=1)
    np.testing.assert_array_equal(again.points, cloud.points)
    other = read_points(path, n_points=1000, seed=2)
    assert not np.array_equal(other.points, cloud.points)
    assert len(read_points(path)) == 2048  # default sample count
    vertices = read_points(path, as_mesh=False)
    np.testing.assert_array_equal(vertices.points, CUBE_V)


def test_obj_with_quads_and_ascii_stl(tmp_path):
    obj = tmp_path / "cube.obj"
    obj.write_text("# cube\n" + "".join(f"v {x} {y} {z}\n" for x, y, z in CUBE_V) +
                   "".join("f " + " ".join(str(i + 1) for i in q) + "\n" for q in CUBE_QUADS))
    assert_on_unit_cube(read_points(obj, n_points=600))
    stl = tmp_path / "cube.STL"
    lines = ["solid cube"]
    for t in CUBE_TRIS:
        v = CUBE_V[t]
        n = np.cross(v[1] - v[0], v[2] - v[0])
        lines += [f"facet normal {n[0]} {n[1]} {n[2]}", "outer loop"]
        lines += [f"vertex {a} {b} {c}" for a, b, c in v] + ["endloop", "endfacet"]
    stl.write_text("\n".join(lines + ["endsolid cube"]) + "\n")
    assert_on_unit_cube(read_points(stl, n_points=600))


def rectangles():
    """Rectangle A = [0,3]×[0,1] at z=0, B = [0,1]×[0,1] at z=5: areas 3 : 1."""
    v = [[0, 0, 0], [3, 0, 0], [3, 1, 0], [0, 1, 0], [0, 0, 5], [1, 0, 5], [1, 1, 5], [0, 1, 5]]
    f = [[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]]
    return np.array(v, float), f


def test_area_weighted(tmp_path):
    v, f = rectangles()
    path = tmp_path / "two.off"
    path.write_text(off_text(v, f))
    p = read_points(path, n_points=8000, seed=0).points
    on_a = p[:, 2] < 1
    # binomial sd at n=8000 is 0.005: 0.75 ± 0.02 is four of them
    assert abs(on_a.mean() - 0.75) < 0.02
    # uniform within A too (its two triangles have equal area): half the samples have x < 1.5
    assert abs((p[on_a, 0] < 1.5).mean() - 0.5) < 0.03


def ply_mesh_bytes(vertices, colors, labels, faces):
    head = ("ply\nformat binary_little_endian 1.0\n"
            f"element vertex {len(vertices)}\n"
            "property float x\nproperty float y\nproperty float z\n"
            "property uchar red\nproperty uchar green\nproperty uchar blue\nproperty int label\n"
            f"element face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n")
    body = b"".join(struct.pack("<3f3Bi", *v, *c, l) for v, c, l in zip(vertices, colors, labels))
    body += b"".join(struct.pack("<B3i", 3, *t) for t in faces)
    return head.encode() + body


def test_ply_faces_interpolate_colours_and_keep_vertex_labels(tmp_path):
    """Triangle T1 (z=0) has red/green/blue corners and label 4; T2 (z=2) label 9.
    On T1 with corners (0,0),(1,0),(0,1) a sample (x, y) has weights (1-x-y, x, y), so its
    colour must be exactly (1-x-y, x, y)."""
    vertices = [(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 2), (1, 0, 2), (0, 1, 2)]
    colors = [(255, 0, 0), (0, 255, 0), (0, 0, 255)] * 2
    labels = [4, 4, 4, 9, 9, 9]
    path = tmp_path / "mesh.ply"
    path.write_bytes(ply_mesh_bytes(vertices, colors, labels, [(0, 1, 2), (3, 4, 5)]))
    report = ReadReport()
    cloud = read_points(path, n_points=400, seed=5, report=report)
    assert report.n_faces == 2 and len(cloud) == 400
    low = cloud.points[:, 2] < 1
    assert 0.4 < low.mean() < 0.6
    np.testing.assert_array_equal(cloud.labels, np.where(low, 4, 9))
    x, y = cloud.points[:, 0].astype(np.float64), cloud.points[:, 1].astype(np.float64)
    np.testing.assert_allclose(cloud.colors, np.stack([1 - x - y, x, y], 1), atol=1e-5)
    np.testing.assert_allclose(cloud.normals, np.tile([0, 0, 1], (400, 1)), atol=1e-6)
    as_cloud = read_points(path, as_mesh=False)
    np.testing.assert_array_equal(as_cloud.labels, labels)


def test_nan_vertex_rejected_or_its_faces_dropped(tmp_path):
    v, f = rectangles()
    v[0] = np.nan
    path = tmp_path / "nan.off"
    path.write_text(off_text(v, f))
    with pytest.raises(InputError, match="2 faces have NaN/Inf vertex coordinates"):
        read_points(path)
    report = ReadReport()
    cloud = read_points(path, n_points=300, drop_invalid=True, report=report)
    assert report.dropped == 2 and report.n_faces == 4 and report.sampled  # 2 of 4 faces left
    np.testing.assert_allclose(cloud.points[:, 2], 5.0)


@pytest.mark.parametrize("name, text", [
    ("empty.off", "OFF\n3 0 0\n0 0 0\n1 0 0\n0.5 1 0\n"),
    ("points.obj", "# exported cloud\nv 0 0 0\nv 1 0 0\nv 0.5 1 0\n"),
])
def test_vertices_without_faces_are_a_cloud(tmp_path, name, text):
    """An OBJ of `v` lines only is a common point-cloud export: its vertices, whatever as_mesh
    says short of insisting on faces."""
    path = tmp_path / name
    path.write_text(text)
    want = np.array([[0, 0, 0], [1, 0, 0], [0.5, 1, 0]], np.float32)
    report = ReadReport()
    cloud = read_points(path, n_points=100, report=report)
    np.testing.assert_array_equal(cloud.points, want)
    assert report.n_faces == 0 and "no faces" in report.format
    np.testing.assert_array_equal(read_points(path, as_mesh=False).points, want)
    with pytest.raises(InputError, match="no faces") as e:
        read_points(path, as_mesh=True)
    assert "\n" not in str(e.value) and name in str(e.value)


def test_obj_vertex_colours_without_faces(tmp_path):
    path = tmp_path / "rgb.obj"
    path.write_text("v 0 0 0 1 0 0\nv 1 0 0 0 1 0\nv 0 1 0 0 0 1\nv 1 1 1 0.5 0.5 0.5\n")
    cloud = read_points(path)
    np.testing.assert_array_equal(cloud.points, [[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 1]])
    np.testing.assert_allclose(cloud.colors, [[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.5] * 3],
                               atol=1 / 255)


@pytest.mark.parametrize("name, text, kind, match", [
    ("flat.off", "OFF\n3 1 0\n0 0 0\n1 1 1\n2 2 2\n3 0 1 2\n", InputError, "zero surface area"),
    ("bad.off", "OFF\nthree 1 0\n", FormatError, "unreadable mesh"),
])
def test_bad_meshes(tmp_path, name, text, kind, match):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(kind, match=match) as e:
        read_points(path)
    assert "\n" not in str(e.value) and name in str(e.value)


def test_ply_as_mesh_without_faces(tmp_path):
    path = tmp_path / "pts.ply"
    path.write_bytes(b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\n"
                     b"property float y\nproperty float z\nend_header\n1 2 3\n")
    with pytest.raises(InputError, match="no faces"):
        read_points(path, as_mesh=True)
    assert len(read_points(path, n_points=50)) == 1  # a cloud is returned whole


@pytest.mark.parametrize("ext", ["glb", "gltf", "3mf", "dae"])
def test_scene_formats_flatten_to_one_mesh(tmp_path, ext):
    """glTF/GLB, 3MF and DAE hold scenes: every node's mesh with its transform, as one mesh."""
    scene = trimesh.Scene()
    scene.add_geometry(trimesh.creation.box((1, 1, 1)), node_name="a")
    moved = np.eye(4)
    moved[:3, 3] = [10.0, 0.0, 0.0]
    scene.add_geometry(trimesh.creation.box((2, 1, 1)), node_name="b", transform=moved)
    path = tmp_path / f"s.{ext}"
    if ext == "dae":  # trimesh writes DAE for a list of meshes, not a scene graph
        from trimesh.exchange.dae import export_collada
        path.write_bytes(export_collada(scene.dump()))
    else:
        scene.export(path)
    report = ReadReport()
    cloud = read_points(path, n_points=2000, report=report)
    assert report.sampled and report.n_faces == 24  # 12 triangles per box
    world = cloud.absolute_points()
    np.testing.assert_allclose(world.min(0), [-0.5, -0.5, -0.5], atol=1e-5)
    np.testing.assert_allclose(world.max(0), [11.0, 0.5, 0.5], atol=1e-5)
    assert (world[:, 0] > 5).any() and (world[:, 0] < 1).any()  # both nodes sampled
