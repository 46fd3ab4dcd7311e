"""Our PLY and PCD readers against the maintained libraries, on the same real-world variants.

    PYTHONPATH=. python benchmarks/bench_readers.py [--points 1000000]

Peers (each where installed; `pip install plyfile pypcd4`): plyfile and Open3D for PLY,
pypcd4 and Open3D for PCD. Two tables, one run:
- correctness per variant — "ok" when the reader returns the right x y z *and* every extra
  per-point property (label, intensity, …), "xyz" when it keeps only coordinates/colours,
  "wrong" when values differ, "error" / "empty" when it refuses or silently returns nothing
  (a truncated file must be refused: "ok" there means it was);
- speed: the median of 5 reads of a binary file of --points points (float x y z, uchar rgb,
  int label), with the ratio to ours.
The variants are written here as the tools that produce them do (see each `make_*`).
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import timeit  # noqa: E402  (median of repeats after a warm-up)

RNG = np.random.default_rng(0)


def ply_bytes(n, fmt="binary_little_endian", order=("x", "y", "z"), double=False, extra=True,
              faces=False):
    xyz = RNG.random((n, 3)).astype(np.float64 if double else np.float32)
    props = [(a, "double" if double else "float", xyz[:, i])
             for a, i in zip(order, ["xyz".index(a) for a in order])]
    if extra:
        props += [("red", "uchar", RNG.integers(0, 256, n).astype(np.uint8)),
                  ("green", "uchar", RNG.integers(0, 256, n).astype(np.uint8)),
                  ("blue", "uchar", RNG.integers(0, 256, n).astype(np.uint8)),
                  ("label", "int", RNG.integers(0, 13, n).astype(np.int32)),
                  ("scalar_Intensity", "float", RNG.random(n).astype(np.float32))]
    head = [f"ply", f"format {fmt} 1.0", "comment written by bench_readers", f"element vertex {n}"]
    head += [f"property {t} {name}" for name, t, _ in props]
    if faces:
        head += [f"element face {n // 3}", "property list uchar int vertex_indices"]
    head.append("end_header")
    body = b""
    if fmt == "ascii":
        body = "".join(" ".join(str(v[i]) for _, _, v in props) + "\n"
                       for i in range(n)).encode()
        if faces:
            body += "".join(f"3 {3 * i} {3 * i + 1} {3 * i + 2}\n" for i in range(n // 3)).encode()
    else:
        e = "<" if fmt == "binary_little_endian" else ">"
        dt = np.dtype([(name, e + v.dtype.str[1:]) for name, _, v in props])
        table = np.empty(n, dt)
        for name, _, v in props:
            table[name] = v
        body = table.tobytes()
        if faces:
            f = np.empty(n // 3, np.dtype([("c", "u1"), ("v", e + "i4", (3,))]))
            f["c"], f["v"] = 3, np.arange(n // 3 * 3).reshape(-1, 3)
            body += f.tobytes()
    truth = {"xyz": np.stack([xyz[:, i] for i in range(3)], 1).astype(np.float64)}
    truth["xyz"] = np.stack([dict(zip(order, [p[2] for p in props[:3]]))[a] for a in "xyz"], 1)
    if extra:
        truth["label"] = dict((p[0], p[2]) for p in props)["label"]
    return ("\n".join(head) + "\n").encode() + body, truth


def pcd_bytes(n, data="binary", extra=True, comma=False, trailing=b""):
    xyz = RNG.random((n, 3)).astype(np.float32)
    cols = [("x", "F", 4, xyz[:, 0]), ("y", "F", 4, xyz[:, 1]), ("z", "F", 4, xyz[:, 2])]
    if extra:
        cols += [("intensity", "F", 4, RNG.random(n).astype(np.float32)),
                 ("label", "U", 4, RNG.integers(0, 13, n).astype(np.uint32))]
    head = ("# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\n"
            f"FIELDS {' '.join(c[0] for c in cols)}\nSIZE {' '.join(str(c[2]) for c in cols)}\n"
            f"TYPE {' '.join(c[1] for c in cols)}\nCOUNT {' '.join('1' for _ in cols)}\n"
            f"WIDTH {n}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {n}\nDATA {data}\n")
    if data == "ascii":
        sep = "," if comma else " "
        body = "".join(sep.join(str(c[3][i]) for c in cols) + "\n" for i in range(n)).encode()
    else:
        dt = np.dtype([(c[0], "<" + ("f" if c[1] == "F" else "u") + str(c[2])) for c in cols])
        table = np.empty(n, dt)
        for c in cols:
            table[c[0]] = c[3]
        body = table.tobytes() + trailing
    truth = {"xyz": xyz.astype(np.float64)}
    if extra:
        truth["label"] = cols[-1][3]
    return head.encode() + body, truth


PLY_VARIANTS = {
    "binary LE, rgb + label + CloudCompare scalar": lambda: ply_bytes(2000),
    "binary big-endian": lambda: ply_bytes(2000, "binary_big_endian"),
    "ascii": lambda: ply_bytes(500, "ascii"),
    "double x y z": lambda: ply_bytes(2000, double=True),
    "z declared before x, y": lambda: ply_bytes(2000, order=("z", "x", "y")),
    "with faces (a scan mesh)": lambda: ply_bytes(3000, faces=True),
    "truncated (must be refused)": lambda: (ply_bytes(2000)[0][:-100], None),
    "header counts a point less than the body holds (must be refused)": lambda: (
        ply_bytes(2000)[0].replace(b"element vertex 2000", b"element vertex 1999"), None),
}
PCD_VARIANTS = {
    "binary, intensity + label": lambda: pcd_bytes(2000),
    "ascii": lambda: pcd_bytes(500, "ascii"),
    "ascii, comma-separated (PDAL)": lambda: pcd_bytes(500, "ascii", comma=True),
    "binary, bytes after the last point": lambda: pcd_bytes(2000, trailing=b"\0" * 7),
    "truncated (must be refused)": lambda: (pcd_bytes(2000)[0][:-100], None),
}


def _arrays(c):
    out = {"xyz": c.absolute_points()}
    if c.labels is not None:
        out["label"] = c.labels
    return out


def ours(path):
    """The parser alone, to x y z and labels: what the peers' readers below do."""
    from pointgcn.io.pcd import read_pcd_columns
    from pointgcn.io.ply import read_ply

    cols = read_ply(path, str(path)).vertex if path.suffix == ".ply" else \
        read_pcd_columns(path, str(path))
    out = {"xyz": np.stack([cols[a] for a in "xyz"], 1).astype(np.float64)}
    if "label" in cols:
        out["label"] = np.asarray(cols["label"])
    return out


def ours_checked(path):
    """`read_points`: the parser plus NaN/Inf and span checks and the float32 local frame."""
    from pointgcn.io import read_points
    return _arrays(read_points(path, as_mesh=False))


def plyfile_reader(path):
    import plyfile
    v = plyfile.PlyData.read(str(path))["vertex"].data
    out = {"xyz": np.stack([v["x"], v["y"], v["z"]], 1).astype(np.float64)}
    if "label" in v.dtype.names:
        out["label"] = np.asarray(v["label"])
    return out


def pypcd4_reader(path):
    from pypcd4 import PointCloud
    pc = PointCloud.from_path(str(path))
    arr = pc.numpy()
    names = list(pc.fields)
    out = {"xyz": arr[:, [names.index(a) for a in "xyz"]].astype(np.float64)}
    if "label" in names:
        out["label"] = arr[:, names.index("label")]
    return out


def open3d_reader(path):
    import open3d as o3d
    pts = np.asarray(o3d.io.read_point_cloud(str(path)).points)
    return {"xyz": pts}


def verdict(reader, path, truth) -> str:
    try:
        got = reader(path)
    except Exception:  # every peer raises its own types
        return "ok (refused)" if truth is None else "error"
    if truth is None:
        return "wrong (accepted a broken file)"
    if len(got["xyz"]) == 0:
        return "empty"
    if got["xyz"].shape != truth["xyz"].shape or not np.allclose(got["xyz"], truth["xyz"],
                                                                 atol=1e-5):
        return "wrong"
    if "label" in truth:
        if "label" not in got:
            return "xyz only"
        if not np.array_equal(np.asarray(got["label"]).astype(np.int64),
                              truth["label"].astype(np.int64)):
            return "wrong label"
    return "ok"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=1_000_000)
    args = ap.parse_args()
    have = lambda m: importlib.util.find_spec(m) is not None  # noqa: E731
    mine = {"pointgcn": ours, "pointgcn read_points": ours_checked}
    peers = {"ply": {**mine, **({"plyfile": plyfile_reader} if have("plyfile") else {}),
                     **({"open3d": open3d_reader} if have("open3d") else {})},
             "pcd": {**mine, **({"pypcd4": pypcd4_reader} if have("pypcd4") else {}),
                     **({"open3d": open3d_reader} if have("open3d") else {})}}
    with tempfile.TemporaryDirectory() as tmp:
        for kind, variants in (("ply", PLY_VARIANTS), ("pcd", PCD_VARIANTS)):
            readers = peers[kind]
            print(f"\n{kind.upper()} correctness | " + " | ".join(readers))
            print("|---" * (len(readers) + 1) + "|")
            for i, (name, make) in enumerate(variants.items()):
                data, truth = make()
                path = Path(tmp) / f"v{i}.{kind}"
                path.write_bytes(data)
                print(f"| {name} | " + " | ".join(verdict(r, path, truth)
                                                   for r in readers.values()) + " |", flush=True)
            data, _ = (ply_bytes(args.points) if kind == "ply" else pcd_bytes(args.points))
            path = Path(tmp) / f"big.{kind}"
            path.write_bytes(data)
            times = {n: timeit(lambda r=r: r(path)) for n, r in readers.items()}
            print(f"\n{kind.upper()} read of {args.points:,} binary points (median of 5): "
                  + ", ".join(f"{n} {t * 1000:.0f} ms ({t / times['pointgcn']:.2f}×)"
                              for n, t in times.items()))
    print(f"\n(python {sys.version.split()[0]}; ratios > 1 are slower than pointgcn)")


if __name__ == "__main__":
    main()
