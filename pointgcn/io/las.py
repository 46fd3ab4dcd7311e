"""LAS/LAZ via laspy (optional: `pip install laspy`, plus `laspy[lazrs]` for .laz).

Scaled x y z (float64) → points (`read_points` stores georeferenced coordinates relative to
`cloud.offset`, see io/cloud.py), red green blue (16-bit in LAS; many writers store 8-bit
values, so colours whose maximum is ≤ 255 are read as 0–255) → colors, classification →
labels, intensity → fields["intensity"].
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import FormatError, InputError
from .cloud import PointCloud


def read_las(path: Path, where: str) -> tuple[PointCloud, str]:
    try:
        import laspy  # optional: only LAS/LAZ files need it
    except ImportError:
        raise InputError(f"{where}: reading LAS/LAZ needs laspy: pip install laspy "
                         "(and 'laspy[lazrs]' for .laz)") from None
    try:
        las = laspy.read(str(path))
    except Exception as e:  # laspy raises LaspyException and plain errors on bad files
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "backend" in message.lower() or "laz" in message.lower():
            raise InputError(f"{where}: cannot decompress LAZ ({message}); "
                             "pip install 'laspy[lazrs]'") from None
        raise FormatError(f"{where}: unreadable LAS file ({message})") from None
    points = np.stack([np.asarray(las.x), np.asarray(las.y), np.asarray(las.z)], axis=1)
    names = set(las.point_format.dimension_names)
    colors = None
    if {"red", "green", "blue"} <= names:
        rgb = np.stack([np.asarray(las.red), np.asarray(las.green), np.asarray(las.blue)], axis=1)
        scale = 255.0 if rgb.size and rgb.max() <= 255 else 65535.0
        colors = (rgb.astype(np.float32) / scale).astype(np.float32)
    fields = {name: np.asarray(getattr(las, name)).astype(np.int64)
              for name in ("classification", "intensity") if name in names}
    cloud = PointCloud(points.astype(np.float64), colors, None, None, fields, str(path))
    return cloud, f"las {las.header.version} point format {las.point_format.id}"
