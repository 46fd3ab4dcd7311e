"""Delimited text clouds: .xyz .txt .csv .pts (whitespace-, comma- or semicolon-separated).

Columns follow `columns.cloud_from_table` (3/4/6/7/9/10 columns) unless the first line is a
header naming them (e.g. `x,y,z,nx,ny,nz` or CloudCompare's `//X,Y,Z,R,G,B`), then names rule.
A non-numeric first line that does not name x y z is skipped as a title. Blank lines and lines
starting with `#` are ignored.
Leica .pts differs (published layout): an optional first line with the point count, then
`x y z`, `x y z intensity`, `x y z r g b` or `x y z intensity r g b` (intensity → fields).
Parsing is numpy's C `loadtxt`; only on failure are lines re-scanned to name the bad one.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import FormatError
from .cloud import PointCloud
from .columns import cloud_from_named, cloud_from_table, table_columns

PTS_LAYOUTS = {
    4: ("x", "y", "z", "intensity"),
    7: ("x", "y", "z", "intensity", "red", "green", "blue"),
}


def _numeric(tokens: list[str]) -> bool:
    try:
        [float(t) for t in tokens]
    except ValueError:
        return False
    return bool(tokens)


def _split(line: str, delimiter: str | None) -> list[str]:
    return [t.strip() for t in line.split(delimiter)] if delimiter else line.split()


def _delimiter(line: str) -> str | None:
    for d in (",", ";"):
        if d in line:
            return d
    return None


def _scan_for_bad_line(lines: list[tuple[int, str]], delimiter: str | None, width: int,
                       where: str) -> FormatError:
    for number, line in lines:
        tokens = _split(line, delimiter)
        if not _numeric(tokens):
            return FormatError(f"{where}: line {number}: non-numeric value in "
                               f"{line.strip()[:40]!r}")
        if len(tokens) != width:
            return FormatError(f"{where}: line {number}: {len(tokens)} columns, expected {width}")
    return FormatError(f"{where}: unreadable numeric table")


def read_text(path: Path, where: str) -> tuple[PointCloud, str]:
    """The cloud and a short description of the layout that was recognised."""
    text = path.read_bytes().decode("utf-8", errors="replace")
    lines = [(i + 1, t) for i, t in enumerate(text.split("\n"))
             if t.strip() and not t.lstrip().startswith("#")]
    if not lines:
        raise FormatError(f"{where}: file has no points")
    is_pts = path.suffix.lower() == ".pts"
    declared = None
    if is_pts and len(lines[0][1].split()) == 1 and lines[0][1].strip().isdigit():
        declared = int(lines[0][1])
        lines = lines[1:]
    header = None
    if lines and not _numeric(_split(lines[0][1], _delimiter(lines[0][1]))):
        raw = lines[0][1].strip().lstrip("/").strip()
        header = [t.strip().strip('"\'') for t in _split(raw, _delimiter(raw))]
        lines = lines[1:]
    if not lines:
        raise FormatError(f"{where}: file has no points")
    delimiter = _delimiter(lines[0][1])
    width = len(_split(lines[0][1], delimiter))
    try:
        table = np.loadtxt([t for _, t in lines], delimiter=delimiter, dtype=np.float64,
                           ndmin=2, comments=None)
    except ValueError:
        raise _scan_for_bad_line(lines, delimiter, width, where) from None
    if table.shape[1] != width:
        raise _scan_for_bad_line(lines, delimiter, width, where)
    if declared is not None and declared != len(table):
        raise FormatError(f"{where}: first line says {declared} points, file has {len(table)}")
    source = str(path)
    if header and len(header) == width and {"x", "y", "z"} <= {h.lower() for h in header}:
        named = cloud_from_named(table_columns(table, header), where, source)
        return named, "text columns " + " ".join(header)
    if is_pts and width in PTS_LAYOUTS:
        names = PTS_LAYOUTS[width]
        cloud = cloud_from_named(table_columns(table, names), where, source)
        return cloud, "pts " + " ".join(names)
    cloud = cloud_from_table(table, where, source)
    return cloud, f"text, {width} columns"
