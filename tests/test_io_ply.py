"""PLY reader/writer: fixtures built byte by byte with `struct` (independent of our writer)."""
import struct

import numpy as np
import open3d as o3d
import pytest

from pointgcn.errors import FormatError, InputError
from pointgcn.io import PointCloud, ReadReport, read_points, write_ply
from pointgcn.io.ply import read_elements

STRUCT = {"char": "b", "uchar": "B", "short": "h", "ushort": "H", "int": "i", "uint": "I",
          "float": "f", "double": "d", "int8": "b", "uint8": "B", "int16": "h", "uint16": "H",
          "int32": "i", "uint32": "I", "float32": "f", "float64": "d"}


def ply_bytes(fmt, elements, crlf=False):
    """elements: [(name, props, rows)]; props: ("float", "x") or ("list", "uchar", "int", "v")."""
    nl = "\r\n" if crlf else "\n"
    head = ["ply", f"format {fmt} 1.0", "comment hand made"]
    for name, props, rows in elements:
        head.append(f"element {name} {len(rows)}")
        head += ["property " + " ".join(p) for p in props]
    head.append("end_header")
    out = (nl.join(head) + nl).encode()
    order = {"binary_little_endian": "<", "binary_big_endian": ">"}.get(fmt)
    for _, props, rows in elements:
        for row in rows:
            if order is None:
                tokens = []
                for p, v in zip(props, row):
                    tokens += [str(len(v))] + [str(x) for x in v] if p[0] == "list" else [repr(v)]
                out += (" ".join(tokens) + nl).encode()
                continue
            for p, v in zip(props, row):
                if p[0] == "list":
                    out += struct.pack(order + STRUCT[p[1]], len(v))
                    out += struct.pack(order + STRUCT[p[2]] * len(v), *v)
                else:
                    out += struct.pack(order + STRUCT[p[0]], v)
    return out


FORMATS = ["ascii", "binary_little_endian", "binary_big_endian"]
ODD_PROPS = [("uchar", "blue"), ("float", "z"), ("double", "x"), ("short", "label"),
             ("uchar", "red"), ("float", "nz"), ("float32", "y"), ("uint8", "green"),
             ("int", "pred"), ("float", "nx"), ("float", "ny"), ("char", "flag")]


def odd_rows(n=6, seed=0):
    rng = np.random.default_rng(seed)
    xyz = rng.uniform(-5, 5, (n, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, (n, 3))
    normal = rng.normal(size=(n, 3)).astype(np.float32)
    label = rng.integers(-3, 14, n)
    pred = rng.integers(0, 100000, n)
    flag = rng.integers(-128, 128, n)
    rows = [(int(rgb[i, 2]), float(xyz[i, 2]), float(xyz[i, 0]), int(label[i]), int(rgb[i, 0]),
             float(normal[i, 2]), float(xyz[i, 1]), int(rgb[i, 1]), int(pred[i]),
             float(normal[i, 0]), float(normal[i, 1]), int(flag[i])) for i in range(n)]
    return rows, dict(xyz=xyz, rgb=rgb, normal=normal, label=label, pred=pred, flag=flag)


def check_odd(cloud, want):
    np.testing.assert_array_equal(cloud.points, want["xyz"])
    np.testing.assert_allclose(cloud.colors, want["rgb"] / 255.0, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(cloud.normals, want["normal"])
    np.testing.assert_array_equal(cloud.labels, want["label"])
    assert sorted(cloud.fields) == ["flag", "pred"]
    np.testing.assert_array_equal(cloud.fields["pred"], want["pred"])
    np.testing.assert_array_equal(cloud.fields["flag"], want["flag"])
    assert cloud.points.dtype == np.float32 and cloud.labels.dtype == np.int64


@pytest.mark.parametrize("fmt", FORMATS)
def test_odd_property_order_and_types(tmp_path, fmt):
    rows, want = odd_rows()
    path = tmp_path / "odd.PLY"  # extension matched case-insensitively
    path.write_bytes(ply_bytes(fmt, [("vertex", ODD_PROPS, rows)]))
    report = ReadReport()
    check_odd(read_points(path, report=report), want)
    assert report.format == f"ply {fmt}" and report.n_faces == 0


@pytest.mark.parametrize("fmt", FORMATS)
def test_elements_around_vertex_are_skipped(tmp_path, fmt):
    """A material element before and a mixed tri/quad face element plus edges after the
    vertices: binary has to walk variable-length lists to find the end exactly."""
    rows, want = odd_rows(n=5)
    material = [("uchar", "ambient_red"), ("float", "power")]
    faces = [("list", "uchar", "int", "vertex_indices"), ("uchar", "tag")]
    face_rows = [([0, 1, 2], 7), ([0, 2, 3, 4], 9), ([1, 2, 4], 1)]
    edges = [("int", "vertex1"), ("int", "vertex2")]
    path = tmp_path / "mesh.ply"
    path.write_bytes(ply_bytes(fmt, [("material", material, [(3, 0.5), (4, 1.5)]),
                                     ("vertex", ODD_PROPS, rows), ("face", faces, face_rows),
                                     ("edge", edges, [(0, 1)])], crlf=fmt == "ascii"))
    check_odd(read_points(path, as_mesh=False), want)
    header, elements = read_elements(path, str(path))
    counts, flat = elements["face"]["vertex_indices"]
    np.testing.assert_array_equal(counts, [3, 4, 3])
    np.testing.assert_array_equal(flat, [0, 1, 2, 0, 2, 3, 4, 1, 2, 4])
    np.testing.assert_array_equal(elements["face"]["tag"], [7, 9, 1])
    np.testing.assert_array_equal(elements["edge"]["vertex2"], [1])


@pytest.mark.parametrize("fmt", FORMATS)
def test_matches_open3d(tmp_path, fmt):
    """Open3D's row index advances when it reads z, so files declaring z before
    x or y come out shifted there. Compare on the usual order, with mixed types and extra
    properties in between."""
    rng = np.random.default_rng(3)
    props = [("double", "x"), ("float", "y"), ("short", "label"), ("float", "z"),
             ("float", "nx"), ("float", "ny"), ("float", "nz"), ("uchar", "red"),
             ("int", "pred"), ("uchar", "green"), ("uchar", "blue")]
    rows = [(float(np.float32(rng.normal())), float(np.float32(rng.normal())), int(i),
             float(np.float32(rng.normal())), 0.0, 0.6, 0.8, int(rng.integers(256)), 5,
             int(rng.integers(256)), int(rng.integers(256))) for i in range(20)]
    path = tmp_path / "o3d.ply"
    path.write_bytes(ply_bytes(fmt, [("vertex", props, rows)]))
    ours = read_points(path)
    theirs = o3d.io.read_point_cloud(str(path))
    assert len(theirs.points) == 20
    np.testing.assert_allclose(ours.points, np.asarray(theirs.points), rtol=0, atol=1e-6)
    np.testing.assert_allclose(ours.colors, np.asarray(theirs.colors), rtol=0, atol=1e-6)
    np.testing.assert_allclose(ours.normals, np.asarray(theirs.normals), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(ours.labels, np.arange(20))


@pytest.mark.parametrize("fmt", FORMATS[1:])
def test_every_type_name(tmp_path, fmt):
    names = list(STRUCT)
    props = [("float", "x"), ("float", "y"), ("float", "z")] + [(t, f"v_{t}") for t in names]
    values = {"char": -128, "uchar": 255, "short": -32768, "ushort": 65535, "int": -2**31,
              "uint": 2**32 - 1, "float": 1.5, "double": 2.0**-30, "int8": 127, "uint8": 1,
              "int16": 32767, "uint16": 2, "int32": 2**31 - 1, "uint32": 3, "float32": -0.25,
              "float64": 1e300}
    path = tmp_path / "types.ply"
    path.write_bytes(ply_bytes(fmt, [("vertex", props, [(1.0, 2.0, 3.0) + tuple(values[t]
                                                                            for t in names)])]))
    cloud = read_points(path)
    for t in names:
        got = cloud.fields[f"v_{t}"]
        assert got[0] == values[t], t
        assert got.dtype == (np.float64 if t in ("double", "float64") else
                             np.float32 if t.startswith("float") else np.int64), t


def test_float_class_and_label_aliases(tmp_path):
    props = [("float", "x"), ("float", "y"), ("float", "z"), ("float", "scalar_label"),
             ("float", "red"), ("float", "green"), ("float", "blue")]
    path = tmp_path / "cc.ply"
    rows = [(0.0, 0.0, 0.0, 3.0, 255.0, 0.0, 51.0), (1.0, 0.0, 0.0, 12.0, 0.0, 0.0, 0.0)]
    path.write_bytes(ply_bytes("ascii", [("vertex", props, rows)]))
    cloud = read_points(path)
    np.testing.assert_array_equal(cloud.labels, [3, 12])
    np.testing.assert_allclose(cloud.colors[0], [1.0, 0.0, 0.2])
    path.write_bytes(path.read_bytes().replace(b"12.0 0.0", b"12.5 0.0"))
    with pytest.raises(FormatError, match="not integers"):
        read_points(path)


def good_binary(n=4):
    props = [("float", "x"), ("float", "y"), ("float", "z")]
    return ply_bytes("binary_little_endian", [("vertex", props, [(1.0, 2.0, 3.0)] * n)])


def one_line(excinfo, path):
    message = str(excinfo.value)
    assert "\n" not in message and str(path) in message
    return message


@pytest.mark.parametrize("mutate, kind, match", [
    (lambda b: b[:-5], FormatError, "truncated"),
    (lambda b: b.replace(b"vertex 4", b"vertex 3"), FormatError, "do not match"),
    (lambda b: b.replace(b"vertex 4", b"vertex 9"), FormatError, "truncated"),
    (lambda b: b.replace(b"end_header\n", b"end_heade\n"), FormatError, "end_header"),
    (lambda b: b.replace(b"little", b"middle"), FormatError, "garbled PLY header line 2"),
    (lambda b: b.replace(b"float y", b"float128 y"), FormatError, "garbled PLY header"),
    (lambda b: b.replace(b"vertex 4", b"vertex four"), FormatError, "garbled PLY header"),
    (lambda b: b.replace(b"float z", b"float y"), FormatError, "duplicate property"),
    (lambda b: b.replace(b"float z", b"float q"), FormatError, "no x y z"),
    (lambda b: b"plx" + b[3:], FormatError, "not a PLY file"),
    (lambda b: b.replace(b"format binary_little_endian 1.0\n", b""), FormatError, "no 'format'"),
])
def test_broken_binary_files(tmp_path, mutate, kind, match):
    path = tmp_path / "bad.ply"
    path.write_bytes(mutate(good_binary()))
    with pytest.raises(kind, match=match) as e:
        read_points(path)
    one_line(e, path)


def test_truncated_face_element(tmp_path):
    props = [("float", "x"), ("float", "y"), ("float", "z")]
    faces = [("list", "uchar", "int", "vertex_indices")]
    data = ply_bytes("binary_big_endian", [("vertex", props, [(0.0, 0.0, 0.0), (1.0, 0.0, 0.0),
                                                              (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)]),
                                           ("face", faces, [([0, 1, 2],), ([0, 1, 2, 3],)])])
    path = tmp_path / "cut.ply"
    path.write_bytes(data[:-3])  # inside the variable-length (walked) face rows
    with pytest.raises(FormatError, match="inside element 'face'"):
        read_points(path)
    path.write_bytes(data.replace(b"face 2", b"face 1"))
    with pytest.raises(FormatError, match="do not match"):
        read_points(path)


@pytest.mark.parametrize("body, match", [
    (b"1 2 3\n4 5 6\n", "declares 3 rows"),
    (b"1 2 3\n4 5 6\n7 8 9\n1 1 1\n", "line 11: data after the last element"),
    (b"1 2 3\n4 5\n7 8 9\n", "line 9: 2 values"),
    (b"1 2 3\n4 5 six\n7 8 9\n", "line 9: non-numeric"),
])
def test_broken_ascii_bodies(tmp_path, body, match):
    head = b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\n" \
           b"property float z\nend_header\n"
    path = tmp_path / "bad.ply"
    path.write_bytes(head + body)
    with pytest.raises(FormatError, match=match) as e:
        read_points(path)
    one_line(e, path)


def test_face_index_out_of_range(tmp_path):
    props = [("float", "x"), ("float", "y"), ("float", "z")]
    faces = [("list", "uchar", "uint", "vertex_indices")]
    path = tmp_path / "idx.ply"
    path.write_bytes(ply_bytes("binary_little_endian", [
        ("vertex", props, [(0.0, 0.0, 0.0)] * 3), ("face", faces, [([0, 1, 3],)])]))
    with pytest.raises(FormatError, match="outside 0..2"):
        read_points(path)


def sample_cloud(n=50, seed=0):
    rng = np.random.default_rng(seed)
    return PointCloud(rng.normal(size=(n, 3)).astype(np.float32),
                      rng.random((n, 3)).astype(np.float32),
                      rng.normal(size=(n, 3)).astype(np.float32),
                      rng.integers(0, 13, n),
                      {"pred": rng.integers(0, 13, n), "score": rng.random(n).astype(np.float32)})


@pytest.mark.parametrize("binary", [True, False])
def test_writer_round_trip_and_open3d(tmp_path, binary):
    cloud = sample_cloud()
    path = tmp_path / "out.ply"
    write_ply(path, cloud, binary=binary)
    back = read_points(path)
    np.testing.assert_array_equal(back.points, cloud.points)
    np.testing.assert_array_equal(back.normals, cloud.normals)
    np.testing.assert_array_equal(back.labels, cloud.labels)
    np.testing.assert_array_equal(back.fields["pred"], cloud.fields["pred"])
    np.testing.assert_array_equal(back.fields["score"], cloud.fields["score"])
    rgb8 = np.round(cloud.colors * 255) / 255
    np.testing.assert_allclose(back.colors, rgb8, rtol=0, atol=1e-7)
    theirs = o3d.io.read_point_cloud(str(path))
    np.testing.assert_allclose(np.asarray(theirs.points), cloud.points, rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.asarray(theirs.colors), rgb8, rtol=0, atol=1e-6)
    head = path.read_bytes().split(b"end_header")[0].decode()
    assert "property uchar red" in head and "property int label" in head
    assert "property int pred" in head and "property float score" in head
    assert list(tmp_path.iterdir()) == [path]  # no temp files left behind


def test_writer_rejects_unwritable_fields(tmp_path):
    cloud = sample_cloud()
    for fields, match in (({"bad name": cloud.labels}, "cannot be a PLY property"),
                          ({"two": np.zeros((50, 2))}, "one value per point"),
                          ({"big": np.full(50, 2**40)}, "32-bit")):
        with pytest.raises(InputError, match=match):
            write_ply(tmp_path / "x.ply", PointCloud(cloud.points, fields=fields))
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("fmt", FORMATS)
def test_empty_face_element_is_a_cloud(tmp_path, fmt):
    props = [("float", "x"), ("float", "y"), ("float", "z")]
    faces = [("list", "uchar", "int", "vertex_indices")]
    path = tmp_path / "nofaces.ply"
    path.write_bytes(ply_bytes(fmt, [("vertex", props, [(1.0, 2.0, 3.0)]), ("face", faces, [])]))
    report = ReadReport()
    np.testing.assert_array_equal(read_points(path, report=report).points, [[1, 2, 3]])
    assert report.n_faces == 0


@pytest.mark.parametrize("order, fmt", [("<", "binary_little_endian"), (">", "binary_big_endian")])
@pytest.mark.parametrize("rows", [[-1], [3, -2]])  # first row (fixed-size path) or a later one
def test_negative_binary_list_count(tmp_path, order, fmt, rows):
    """`property list char int` allows negative counts: a FormatError, never a crash or a read
    to the end of the file."""
    head = (f"ply\nformat {fmt} 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
            f"property float z\nelement face {len(rows)}\n"
            "property list char int vertex_indices\nend_header\n").encode()
    body = struct.pack(order + "9f", 0, 0, 0, 1, 0, 0, 0, 1, 0)
    for n in rows:
        body += struct.pack(order + "b", n) + struct.pack(order + "3i", 0, 1, 2)
    path = tmp_path / "neg.ply"
    path.write_bytes(head + body)
    with pytest.raises(FormatError, match="negative list length in property 'vertex_indices'") \
            as e:
        read_points(path)
    one_line(e, path)
