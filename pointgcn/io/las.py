"""LAS/LAZ (ASPRS LiDAR) through laspy with the lazrs backend: versions 1.2–1.4, point
formats 0–10, extra-byte dimensions, compressed .laz.

Scaled x y z (float64) → points (`read_points` stores georeferenced coordinates relative to
`cloud.offset`, see io/cloud.py); red green blue (16-bit in LAS; many writers store 8-bit
values, so colours whose maximum is ≤ 255 are read as 0–255) → colors, unless every value is
0 — formats 2, 3, 5, 7, 8, 10 have colour slots that scanners without a camera leave at 0, and
a black cloud would pass a colour model's check (said in a note); classification →
labels with `label_scheme="asprs"` (2 ground, 6 building, …: not a model's class ids, so
`segment` scores them only when told to, `--labels classification`); every other dimension —
intensity, returns, GPS time, scan angle, flags, user data, point source, NIR, and each
extra-byte dimension — → a field of its own name (multi-value extra bytes → (N, k) fields).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import FormatError, InputError
from .cloud import PointCloud
from .columns import as_field

NOT_FIELDS = {"X", "Y", "Z", "red", "green", "blue", "classification"}


def read_las(path: Path, where: str, notes: list[str] | None = None
             ) -> tuple[PointCloud, str]:
    """The cloud and its kind ("las 1.4 point format 7"); what was tolerated goes to `notes`."""
    import laspy  # imported here: only LAS inputs pay for it

    try:
        las = laspy.read(str(path))
    except Exception as e:  # laspy raises LaspyException and plain errors on bad files
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "backend" in message.lower() or "lazrs" in message.lower():
            raise InputError(f"{where}: cannot decompress LAZ ({message}); "
                             "pip install 'laspy[lazrs]'") from None
        raise FormatError(f"{where}: unreadable LAS file ({message})") from None
    if len(las.points) == 0:
        raise FormatError(f"{where}: the LAS file holds no points")
    points = np.stack([np.asarray(las.x), np.asarray(las.y), np.asarray(las.z)], axis=1)
    names = list(las.point_format.dimension_names)
    colors = None
    if {"red", "green", "blue"} <= set(names):
        rgb = np.stack([np.asarray(las.red), np.asarray(las.green), np.asarray(las.blue)], axis=1)
        if not rgb.any():  # the point format has colour slots, the scanner filled none
            if notes is not None:
                notes.append(f"{where}: its red green blue are all 0 (a point format with "
                             "colour slots left empty): read as no colours")
        else:
            scale = 255.0 if rgb.max() <= 255 else 65535.0
            colors = (rgb.astype(np.float32) / scale).astype(np.float32)
    labels = (np.asarray(las.classification).astype(np.int64)
              if "classification" in names else None)
    fields = {name: as_field(np.asarray(las[name])) for name in names if name not in NOT_FIELDS}
    extra = len(list(las.point_format.extra_dimension_names))
    kind = (f"las {las.header.version} point format {las.point_format.id}"
            + (f", {extra} extra-byte dimensions" if extra else ""))
    cloud = PointCloud(points.astype(np.float64), colors, None, labels, fields, str(path),
                       label_scheme="asprs" if labels is not None else None)
    return cloud, kind

