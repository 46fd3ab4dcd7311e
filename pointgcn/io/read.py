"""`read_points`: the one entry that turns any supported file into a checked `PointCloud`.

Meshes: OFF/OBJ/STL and PLY files with faces are sampled — `n_points` (default 2048)
area-weighted points on the surface with face normals, deterministic for `seed` — which is what
shape classification needs. A file without faces (a PLY cloud, an OBJ of `v` lines only) is
returned as its vertices, and `as_mesh=False` returns a mesh's vertices too — what segmentation
and `data info` need: a scanned, triangulated PLY's points are its vertices. `as_mesh=True`
insists on faces. `report.n_faces` counts the file's faces either way, `report.sampled` says
which happened.
Point clouds are returned whole (`n_points` does not apply; subsample with pointgcn.data).
Every result is checked: NaN/Inf coordinates are an error unless `drop_invalid` (then those
points, or a mesh's faces touching them, are dropped and counted in `report.dropped`), an
empty result is an error, and so is a cloud spanning more than MAX_SPAN units (float32 maximum
coordinates from a corrupt binary file would overflow every distance computed later). All problems raise `InputError`/`FormatError` with a one-line message.
Coordinates: every reader hands its x y z (and a mesh sampler its samples) over in float64;
here, once, `local_frame` stores them as float32 `points` relative to `cloud.offset` (non-zero
only for coordinates beyond ±2048, e.g. georeferenced scans; see io/cloud.py).
"""
from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from .arrays import read_numpy
from .cloud import PointCloud, bounds, local_frame
from .columns import cloud_from_named
from .e57 import read_e57
from .las import read_las
from .mesh import DEFAULT_SAMPLES, DROP_INVALID, drop_invalid_faces, load_mesh, sample_surface
from .pcd import read_pcd
from .ply import read_ply
from .text import read_text

CLOUD_FORMATS = (".ply", ".pcd", ".xyz", ".txt", ".csv", ".pts", ".npy", ".npz", ".las", ".laz",
                 ".e57")
# trimesh reads them all; glTF/GLB, 3MF and DAE hold scenes, flattened to one mesh (mesh.py)
MESH_FORMATS = (".off", ".obj", ".stl", ".glb", ".gltf", ".3mf", ".dae")
SUPPORTED = CLOUD_FORMATS + MESH_FORMATS
log = logging.getLogger(__name__)
# Largest extent of a cloud along any axis, in its own units: 10⁹ km in metres, beyond any real
# scan; squared distances of such clouds still fit float32 (3·10²⁴ ≪ 3.4·10³⁸).
MAX_SPAN = 1e12


@dataclass
class ReadReport:
    """What `read_points` did, for the CLI to print (pass one in as `report=`)."""

    format: str = ""      # e.g. "ply binary_little_endian", "pcd ascii", "mesh off"
    n_read: int = 0       # points read (or sampled) before invalid ones were dropped
    dropped: int = 0      # points (clouds) or faces (meshes) dropped for NaN/Inf coordinates
    n_faces: int = 0      # faces in the file (0 for point clouds)
    sampled: bool = False  # points were sampled on the faces (else they are the file's points)
    notes: list[str] = field(default_factory=list)  # what was tolerated (stages print them)


def check_file(path: Path) -> None:
    """A readable regular file of a supported kind, else one line (never opens a pipe)."""
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED:
        raise InputError(f"{path}: unknown extension {path.suffix or '(none)'!r}; supported: "
                         f"{' '.join(SUPPORTED)}")
    if not os.path.exists(path):
        broken = os.path.lexists(path)
        raise InputError(f"{path}: {'broken or looping link' if broken else 'no such file'}")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not a file")
    info = path.stat()
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"{path}: not a regular file (a pipe, socket or device); save the "
                         "cloud to a file first")
    if info.st_size == 0:
        raise InputError(f"{path}: file is empty")


def _read_any(path: Path, where: str, n_points: int | None, seed: int, as_mesh: bool | None,
              drop_invalid: bool, report: ReadReport) -> PointCloud:
    suffix = path.suffix.lower()
    faces = None
    if suffix == ".ply":
        data = read_ply(path, where)
        report.format = f"ply {data.format}"
        vertex_cloud = cloud_from_named(data.vertex, where, str(path))
        faces = data.faces if data.faces is not None and len(data.faces) else None
        report.n_faces = 0 if faces is None else len(faces)
        if as_mesh and faces is None:
            raise InputError(f"{where}: PLY file has no faces to sample points from")
        if faces is None or as_mesh is False:
            return vertex_cloud
    elif suffix in MESH_FORMATS:
        vertex_cloud, faces = load_mesh(path, where)
        report.n_faces = len(faces)
        report.format = f"mesh {suffix[1:]}" if len(faces) else f"{suffix[1:]} vertices, no faces"
        if as_mesh and not len(faces):
            raise InputError(f"{where}: mesh has no faces to sample points from")
        if as_mesh is False or not len(faces):
            return vertex_cloud
    elif suffix == ".pcd":
        cloud, mode = read_pcd(path, where, report.notes)
        report.format = f"pcd {mode}"
        return cloud
    elif suffix in (".npy", ".npz"):
        cloud, report.format = read_numpy(path, where)
        return cloud
    elif suffix in (".las", ".laz"):
        cloud, report.format = read_las(path, where, report.notes)
        return cloud
    elif suffix == ".e57":
        cloud, report.format = read_e57(path, where, report.notes)
        return cloud
    else:
        cloud, report.format = read_text(path, where)
        return cloud

    faces, report.dropped = drop_invalid_faces(vertex_cloud.points, faces, drop_invalid, where)
    if not len(faces):
        raise InputError(f"{where}: all {report.dropped} faces touch NaN/Inf vertices; no "
                         "surface is left to sample")
    report.sampled = True
    return sample_surface(vertex_cloud, faces, n_points or DEFAULT_SAMPLES, seed, where)


def read_points(path: str | Path, *, n_points: int | None = None, drop_invalid: bool = False,
                seed: int = 0, as_mesh: bool | None = None,
                report: ReadReport | None = None) -> PointCloud:
    """Read a point cloud or sample a mesh (see the module doc for the rules).

    Extensions (case-insensitive): .ply .pcd .xyz .txt .csv .pts .npy .npz .las .laz (laspy)
    and meshes .off .obj .stl. `report`, if given, is filled in with what happened.
    """
    path = Path(path)
    where = str(path)
    report = report if report is not None else ReadReport()
    check_file(path)
    try:
        cloud = _read_any(path, where, n_points, seed, as_mesh, drop_invalid, report)
    except (PermissionError, IsADirectoryError) as e:
        raise InputError(f"{where}: cannot read ({e.strerror})") from None
    except MemoryError:
        raise InputError(f"{where}: too large to read into memory") from None
    report.n_read = len(cloud)
    if not report.sampled:
        p = cloud.points  # column by column: an axis-1 reduction over 3 is slow (cloud.bounds)
        finite = np.isfinite(p[:, 0]) & np.isfinite(p[:, 1]) & np.isfinite(p[:, 2])
        n_bad = int(len(finite) - finite.sum())
        if n_bad and not drop_invalid:
            raise InputError("{where}: {n} points have NaN/Inf coordinates; pass {drop} to "
                             "drop them", where=where, n=n_bad, drop=DROP_INVALID)
        if n_bad:
            cloud = cloud.subset(finite)
            report.dropped = n_bad
    if len(cloud) == 0:
        extra = " after dropping invalid ones" if report.dropped else ""
        raise InputError(f"{where}: no points{extra}")
    lo, hi = bounds(cloud.points)
    _check_span(lo, hi, where)
    for note in report.notes:  # the CLI prints these as `note: …` (apps/cli.py)
        log.warning(note)
    cloud.points, cloud.offset = local_frame(cloud.points, lo, hi)
    cloud.source = str(path)
    return cloud


def _check_span(lo: np.ndarray, hi: np.ndarray, where: str) -> None:
    span = float(np.max(hi - lo))
    if not span <= MAX_SPAN:  # also catches an overflow to inf
        raise InputError(f"{where}: the points span {span:.3g} units, more than {MAX_SPAN:.0e} "
                         "(a corrupt file? coordinates this far apart cannot be processed)")
