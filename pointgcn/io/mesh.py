"""Meshes (OFF, OBJ, STL via trimesh; PLY faces via our parser) → points sampled on the surface.

Sampling is trimesh's area-weighted `sample_surface` (uniform over the surface, deterministic for
a seed). Each sample's normal is its face's normal; per-vertex colours and float fields are
interpolated with the sample's barycentric weights; labels and integer fields take the value of
the nearest corner (largest weight), so a sample never gets a class no vertex has.
trimesh 5.2 reads ModelNet's glued `OFF8 6 0` first line as it is (tested).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import FormatError, InputError, Setting
from .cloud import PointCloud

DEFAULT_SAMPLES = 2048
# Far more samples than any model or view needs, bounded so that a typo (3·10⁸) is an error
# instead of running the machine out of memory.
MAX_SAMPLES = 1_000_000
# The reading switch that drops points (faces) with NaN/Inf coordinates, as errors name it.
DROP_INVALID = Setting("drop_invalid", "drop_invalid=True")


def load_mesh(path: Path, where: str) -> tuple[PointCloud, np.ndarray]:
    """(per-vertex cloud with float64 positions and vertex colours if any, (F, 3) int64
    faces); a file of vertices only gives (its vertices, no faces)."""
    import trimesh  # optional (and slow to import): only mesh files need it

    kind = path.suffix.lower().lstrip(".")
    try:
        mesh = trimesh.load(str(path), file_type=kind, force="mesh", process=False)
        if not len(getattr(mesh, "vertices", ())) and not len(getattr(mesh, "faces", ())):
            # force="mesh" drops vertices no face uses: an OBJ of `v` lines only (a common
            # point-cloud export) comes back empty; unforced it is a trimesh PointCloud
            mesh = trimesh.load(str(path), file_type=kind, process=False)
    except Exception as e:  # trimesh raises bare ValueError/IndexError/KeyError on bad files
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise FormatError(f"{where}: unreadable mesh ({message})") from None
    if isinstance(mesh, trimesh.PointCloud):
        vertices, faces = np.asarray(mesh.vertices, np.float64), np.empty((0, 3), np.int64)
        rgba = np.asarray(mesh.colors)
        colors = (rgba[:, :3].astype(np.float32) / 255.0
                  if rgba.ndim == 2 and len(rgba) == len(vertices) else None)
        return PointCloud(vertices, colors, source=str(path)), faces
    vertices = np.asarray(getattr(mesh, "vertices", np.empty((0, 3))), np.float64)
    faces = np.asarray(getattr(mesh, "faces", np.empty((0, 3))), np.int64).reshape(-1, 3)
    colors = None
    visual = getattr(mesh, "visual", None)
    if faces.size and getattr(visual, "kind", None) == "vertex":
        colors = np.asarray(visual.vertex_colors)[:, :3].astype(np.float32) / 255.0
    return PointCloud(vertices, colors, source=str(path)), faces


def face_normals(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit normals (F, 3) and areas (F,) of triangles, computed in float64."""
    tri = vertices.astype(np.float64)[faces]
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    length = np.linalg.norm(cross, axis=1)
    normals = cross / np.where(length > 0, length, 1.0)[:, None]
    return normals, 0.5 * length


def drop_invalid_faces(vertices: np.ndarray, faces: np.ndarray, drop_invalid: bool,
                       where: str) -> tuple[np.ndarray, int]:
    """Faces without NaN/Inf corners, and how many were dropped (error unless `drop_invalid`)."""
    if faces.size and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise FormatError(f"{where}: a face refers to a vertex index outside "
                          f"0..{len(vertices) - 1}")
    bad = (~np.all(np.isfinite(vertices), axis=1))[faces].any(axis=1)
    n_bad = int(bad.sum())
    if n_bad and not drop_invalid:
        raise InputError("{where}: {n} faces have NaN/Inf vertex coordinates; pass {drop} to "
                         "drop them", where=where, n=n_bad, drop=DROP_INVALID)
    return (faces[~bad] if n_bad else faces), n_bad


def sample_surface(vertex_cloud: PointCloud, faces: np.ndarray, n_points: int, seed: int,
                   where: str) -> PointCloud:
    """`n_points` area-weighted samples on the triangles `faces` of `vertex_cloud`'s points.

    The vertices of `faces` must be finite (see `drop_invalid_faces`). Sampling is done in
    float64 and the samples stay float64, like every reader's x y z (read_points stores them).
    """
    import trimesh  # optional (and slow to import): only mesh files need it

    if not 0 < n_points <= MAX_SAMPLES:
        raise InputError(f"{where}: mesh samples must be 1 to {MAX_SAMPLES:,}, got {n_points:,}")
    vertices = vertex_cloud.points
    if faces.size == 0:
        raise InputError(f"{where}: mesh has no faces to sample points from")
    normals, areas = face_normals(vertices, faces)
    if not faces.size or not areas.sum() > 0:
        raise InputError(f"{where}: mesh has zero surface area; cannot sample points")
    mesh = trimesh.Trimesh(vertices.astype(np.float64), faces, process=False, validate=False)
    points, face_index, bary = trimesh.sample.sample_surface(
        mesh, int(n_points), seed=seed, return_barycentric=True)
    corners = faces[face_index]                          # (n, 3) vertex ids of each sample
    nearest = corners[np.arange(len(corners)), np.argmax(bary, axis=1)]

    def interpolate(values: np.ndarray) -> np.ndarray:
        v = values[corners].astype(np.float64)           # (n, 3, C) or (n, 3)
        w = bary if v.ndim == 2 else bary[:, :, None]
        return (v * w).sum(axis=1)

    colors = None
    if vertex_cloud.colors is not None:
        colors = np.clip(interpolate(vertex_cloud.colors), 0, 1).astype(np.float32)
    labels = None if vertex_cloud.labels is None else vertex_cloud.labels[nearest]
    fields = {}
    for name, values in vertex_cloud.fields.items():
        fields[name] = (values[nearest] if values.dtype.kind in "uib"
                        else interpolate(values).astype(values.dtype))
    return PointCloud(np.ascontiguousarray(points, dtype=np.float64), colors,
                      normals[face_index].astype(np.float32), labels, fields,
                      vertex_cloud.source)
