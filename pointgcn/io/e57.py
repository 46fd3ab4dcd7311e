"""E57 (ASTM E2807, terrestrial scanners) through pye57, the maintained libE57Format binding.

Every scan of the file, in the file's global frame (each scan's pose applied; spherical scans
converted to x y z; points the scanner flagged invalid dropped, all by pye57's `read_scan`),
becomes one cloud: `intensity` and the scan's index in the file (`scan`) as fields, colours
when some scan has them. Scanners mix: a registered project often holds coloured scans beside
intensity-only ones. Their colours are kept and the scans without any get mid grey (0.5, what a
colour model is given for a cloud without colours), said in a note naming those scans; the
`scan` field tells them apart. Intensity missing from some scans is likewise NaN there.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import FormatError
from .cloud import PointCloud
from .columns import normalize_colors

GREY = 0.5  # colours of the points of scans that have none (module doc)


def read_e57(path: Path, where: str, notes: list[str] | None = None
             ) -> tuple[PointCloud, str]:
    """The cloud and its kind ("e57, 3 scans"); what was filled in goes to `notes`."""
    import pye57  # imported here: a compiled reader only E57 inputs need

    try:
        e57 = pye57.E57(str(path))
        scans = [e57.read_scan(i, intensity=True, colors=True, ignore_missing_fields=True)
                 for i in range(e57.scan_count)]
    except Exception as e:  # libE57Format raises its own exception types on bad files
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise FormatError(f"{where}: unreadable E57 file ({message})") from None
    scans = [(i, s) for i, s in enumerate(scans) if len(s.get("cartesianX", ()))]
    if not scans:
        raise FormatError(f"{where}: the E57 file holds no valid points")
    xyz = np.concatenate([np.stack([s["cartesianX"], s["cartesianY"], s["cartesianZ"]], axis=1)
                          for _, s in scans]).astype(np.float64)
    coloured = [i for i, s in scans if "colorRed" in s]
    colors = None
    if coloured:
        colors = np.concatenate([
            normalize_colors(np.stack([s["colorRed"], s["colorGreen"], s["colorBlue"]], axis=1),
                             where) if "colorRed" in s
            else np.full((len(s["cartesianX"]), 3), GREY, np.float32) for _, s in scans])
        _note_missing(notes, where, "colours", "mid grey (0.5)", scans, coloured)
    fields = {"scan": np.concatenate([np.full(len(s["cartesianX"]), i, np.int64)
                                      for i, s in scans])}
    with_intensity = [i for i, s in scans if "intensity" in s]
    if with_intensity:
        fields["intensity"] = np.concatenate([
            np.asarray(s["intensity"], np.float32) if "intensity" in s
            else np.full(len(s["cartesianX"]), np.nan, np.float32) for _, s in scans])
        _note_missing(notes, where, "intensity", "NaN", scans, with_intensity)
    return PointCloud(xyz, colors, fields=fields, source=str(path)), f"e57, {len(scans)} scans"


def _note_missing(notes, where, what, fill, scans, having) -> None:
    missing = [(i, len(s["cartesianX"])) for i, s in scans if i not in having]
    if missing and notes is not None:
        which = ", ".join(str(i) for i, _ in missing)
        n = sum(k for _, k in missing)
        notes.append(f"{where}: {len(missing)} of {len(scans)} scans have no {what} "
                     f"(scan {which}; field `scan`): their {n} points get {fill}")
