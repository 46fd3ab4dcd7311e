"""E57 (ASTM E2807, terrestrial scanners) through pye57, the maintained libE57Format binding.

Every scan of the file, in the file's global frame (each scan's pose applied; spherical scans
converted to x y z; points the scanner flagged invalid dropped, all by pye57's `read_scan`),
becomes one cloud: colours when the scans have them, `intensity` and the scan's index (`scan`)
as fields.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import FormatError
from .cloud import PointCloud
from .columns import normalize_colors


def read_e57(path: Path, where: str) -> tuple[PointCloud, str]:
    import pye57  # imported here: a compiled reader only E57 inputs need

    try:
        e57 = pye57.E57(str(path))
        scans = [e57.read_scan(i, intensity=True, colors=True, ignore_missing_fields=True)
                 for i in range(e57.scan_count)]
    except Exception as e:  # libE57Format raises its own exception types on bad files
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise FormatError(f"{where}: unreadable E57 file ({message})") from None
    scans = [s for s in scans if len(s.get("cartesianX", ()))]
    if not scans:
        raise FormatError(f"{where}: the E57 file holds no valid points")
    xyz = np.concatenate([np.stack([s["cartesianX"], s["cartesianY"], s["cartesianZ"]], axis=1)
                          for s in scans]).astype(np.float64)
    colors = None
    if all("colorRed" in s for s in scans):
        rgb = np.concatenate([np.stack([s["colorRed"], s["colorGreen"], s["colorBlue"]], axis=1)
                              for s in scans])
        colors = normalize_colors(rgb, where)
    fields = {"scan": np.concatenate([np.full(len(s["cartesianX"]), i, np.int64)
                                      for i, s in enumerate(scans)])}
    if all("intensity" in s for s in scans):
        fields["intensity"] = np.concatenate([s["intensity"] for s in scans]).astype(np.float32)
    return PointCloud(xyz, colors, fields=fields, source=str(path)), f"e57, {len(scans)} scans"
