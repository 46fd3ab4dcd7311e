"""Clouds read a chunk at a time, for files larger than memory (engine/streaming.py).

Binary PLY (a vertex element of scalar properties, first in the file) and .npy (a structured
array with named columns, or an (N, 3) table) are read with `np.fromfile` at an offset — plain
reads, not a memory map, whose pages would count as the process's resident memory until the
whole file had been touched; LAS/LAZ through laspy's `chunk_iterator`. Every chunk gets the
same per-point conversion `read_points` applies to the whole file (io/columns.py naming and
colour rules, `local_frame`), so a chunk's points, colours and labels equal the matching rows of
`read_points(path)`. Two rules look at the whole file and are settled by a first pass
(`scan_chunks`): float colours are 0–255 when any value exceeds 1, LAS colours 8-bit when none
exceeds 255; and the float32 frame's offset comes from the bounds.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import FormatError, InputError
from .cloud import LOCAL_LIMIT, PointCloud
from .columns import (COLOR_NAMES, LABEL_NAMES, XYZ, as_field, as_labels, cloud_from_named,
                      cloud_from_table)
from .las import NOT_FIELDS as LAS_NOT_FIELDS
from .ply import FORMATS, MAX_HEADER, _fixed_dtype, parse_header
from .read import check_file

STREAMED = (".ply", ".npy", ".las", ".laz")


@dataclass
class Chunk:
    """Rows [start, start + len) of the file: float64 coordinates as read, raw colours, labels."""
    start: int
    xyz: np.ndarray
    rgb: np.ndarray | None
    labels: np.ndarray | None
    raw: object = None  # the rows as read: a structured array, or laspy's point record


@dataclass
class Scan:
    """What the whole-file rules need, from one pass: bounds, colour maximum, finiteness."""
    n: int = 0
    lo: np.ndarray = field(default_factory=lambda: np.full(3, np.inf))
    hi: np.ndarray = field(default_factory=lambda: np.full(3, -np.inf))
    rgb_max: float = 0.0
    n_bad: int = 0

    @property
    def offset(self) -> np.ndarray:
        """`local_frame`'s rule: a whole-unit offset only for coordinates beyond LOCAL_LIMIT."""
        if max(np.abs(self.lo).max(), np.abs(self.hi).max()) >= LOCAL_LIMIT:
            return np.floor(self.lo)
        return np.zeros(3)


class ChunkReader:
    """One file, read front to back in chunks any number of times."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.where = str(path)
        suffix = self.path.suffix.lower()
        if suffix not in STREAMED:
            raise InputError(f"{self.where}: streaming reads {' '.join(STREAMED)} files; "
                             f"convert {suffix or 'this file'} first")
        check_file(self.path)  # before opening: a pipe would block, a device never end
        self.kind = "las" if suffix in (".las", ".laz") else suffix[1:]
        self.label_scheme = "asprs" if self.kind == "las" else None
        self._columns: list[str] = []  # what select_labels may name
        getattr(self, f"_open_{self.kind}")()

    # ------------------------------------------------------------------ headers
    def _open_ply(self) -> None:
        with open(self.path, "rb") as f:
            head = f.read(MAX_HEADER)
        header = parse_header(head, self.where)
        order = FORMATS[header.format]
        vertex = header.elements[0] if header.elements else None
        if order is None or vertex is None or vertex.name != "vertex" or \
                any(p.count_dtype for p in vertex.properties):
            raise InputError(f"{self.where}: streaming reads binary PLY whose first element is "
                             "the vertices (scalar properties); convert this file first")
        self._offset, self._dtype = header.data_offset, _fixed_dtype(vertex, order, {})
        self.n = vertex.count
        self._names(list(self._dtype.names))

    def _open_npy(self) -> None:
        with open(self.path, "rb") as f:
            try:
                version = np.lib.format.read_magic(f)
                read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                        else np.lib.format.read_array_header_2_0)
                shape, fortran, dtype = read(f)
            except ValueError as e:
                raise FormatError(f"{self.where}: not a readable .npy file ({e})") from None
            self._offset = f.tell()
        if dtype.hasobject or fortran:
            raise InputError(f"{self.where}: streaming reads C-ordered numeric .npy files")
        if dtype.names and len(shape) == 1:
            self._dtype, self.n = dtype, shape[0]
            self._names(list(dtype.names))
        elif len(shape) == 2 and shape[1] == 3 and dtype.kind in "uif":
            self._dtype, self.n = np.dtype((dtype, 3)), shape[0]
            self._xyz, self._rgb, self._label = None, None, None
        else:
            raise InputError(f"{self.where}: streaming reads a structured .npy with named "
                             f"columns or an (N, 3) table, not {shape} {dtype}")

    def _open_las(self) -> None:
        import laspy  # imported here: only LAS inputs pay for it

        try:
            with laspy.open(str(self.path)) as las:
                self.n = int(las.header.point_count)
                names = set(las.header.point_format.dimension_names)
        except Exception as e:  # laspy raises LaspyException and plain errors on bad files
            raise FormatError(f"{self.where}: unreadable LAS file "
                              f"({str(e).splitlines()[0] if str(e) else type(e).__name__})"
                              ) from None
        self._rgb = ("red", "green", "blue") if {"red", "green", "blue"} <= names else None
        self._label = "classification" if "classification" in names else None
        self._columns = sorted(names)

    def _names(self, names: list[str]) -> None:
        self._columns = list(names)
        lower = {}
        for name in names:
            lower.setdefault(name.lower(), name)
        if not all(a in lower for a in XYZ):
            raise FormatError(f"{self.where}: no x y z columns (has: {', '.join(names)})")
        self._xyz = tuple(lower[a] for a in XYZ)
        self._rgb = next((tuple(lower[c] for c in g) for g in COLOR_NAMES
                          if all(c in lower for c in g)), None)
        self._label = next((lower[n] for n in LABEL_NAMES if n in lower), None)

    def select_labels(self, name: str) -> None:
        """Take the labels from the column `name` (one whole number per point), as this
        model's class ids — not a LAS's ASPRS codes; as `io.columns.labels_field` does."""
        if name not in self._columns:
            raise InputError(f"{self.where}: no field {name!r} to take labels from (it has: "
                             f"{', '.join(self._columns) or 'none'})")
        if self.kind != "las" and self._dtype[name].shape:
            raise InputError(f"{self.where}: field {name!r} has "
                             f"{int(np.prod(self._dtype[name].shape))} values per point; labels "
                             "need one")
        self._label, self.label_scheme = name, None

    @property
    def has_colors(self) -> bool:
        return self._rgb is not None

    @property
    def has_labels(self) -> bool:
        return self._label is not None

    # ------------------------------------------------------------------ reading
    def chunks(self, size: int) -> Iterator[Chunk]:
        """The raw chunks, in file order."""
        if self.kind == "las":
            yield from self._las_chunks(size)
            return
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            for start in range(0, self.n, size):
                count = min(size, self.n - start)
                rows = np.fromfile(f, self._dtype, count)
                if len(rows) != count:
                    raise FormatError(f"{self.where}: truncated: {start + len(rows)} of "
                                      f"{self.n} points")
                if self._xyz is None:
                    yield Chunk(start, rows.astype(np.float64), None, None, rows)
                    continue
                xyz = np.stack([rows[a].astype(np.float64) for a in self._xyz], axis=1)
                rgb = np.stack([rows[c] for c in self._rgb], axis=1) if self._rgb else None
                labels = rows[self._label] if self._label else None
                yield Chunk(start, xyz, rgb, labels, rows)

    def _las_chunks(self, size: int) -> Iterator[Chunk]:
        import laspy

        start = 0
        with laspy.open(str(self.path)) as las:
            for rec in las.chunk_iterator(size):
                xyz = np.stack([np.asarray(rec.x), np.asarray(rec.y), np.asarray(rec.z)], 1)
                rgb = (np.stack([np.asarray(rec[c]) for c in self._rgb], 1)
                       if self._rgb else None)
                labels = np.asarray(rec[self._label]) if self._label else None
                yield Chunk(start, xyz.astype(np.float64), rgb, labels, rec)
                start += len(xyz)

    def scan(self, size: int) -> Scan:
        """One pass for the whole-file rules (see the module doc)."""
        s = Scan()
        for c in self.chunks(size):
            ok = np.isfinite(c.xyz).all(axis=1)
            s.n += len(ok)
            s.n_bad += int(len(ok) - ok.sum())
            if ok.any():
                s.lo = np.minimum(s.lo, c.xyz[ok].min(axis=0))
                s.hi = np.maximum(s.hi, c.xyz[ok].max(axis=0))
            if c.rgb is not None and c.rgb.size:
                finite = c.rgb[np.isfinite(c.rgb)] if c.rgb.dtype.kind == "f" else c.rgb
                if finite.size:
                    s.rgb_max = max(s.rgb_max, float(finite.max()))
        if s.n != self.n:
            raise FormatError(f"{self.where}: the header counts {self.n} points, the body "
                              f"holds {s.n}")
        if self.kind == "las" and self._rgb and s.rgb_max == 0:
            self._rgb = None  # io/las.py: colour slots a scanner left at 0 are no colours
        return s

    def converted(self, chunk: Chunk, scan: Scan):
        """(float32 points relative to `scan.offset`, colours 0–1 or None) exactly as
        `read_points` stores those rows; the labels, where wanted, are `labels_of`'s."""
        offset = scan.offset
        xyz = chunk.xyz - offset if offset.any() else chunk.xyz
        points = np.ascontiguousarray(xyz, np.float32)
        colors = None if chunk.rgb is None else self._colors(chunk.rgb, scan.rgb_max)
        return points, colors

    def labels_of(self, chunk: Chunk) -> np.ndarray | None:
        """The chunk's labels as int64 class ids (−1: unlabelled), or None."""
        if chunk.labels is None:
            return None
        if self.kind == "las" and self._label == "classification":
            return chunk.labels.astype(np.int64)
        return as_labels(np.asarray(chunk.labels), self.where, self._label)

    def cloud(self, chunk: Chunk, scan: Scan) -> PointCloud:
        """The chunk's rows as `read_points(path)` holds them — points, colours, normals,
        labels and every other column as a field — in the frame of `scan.offset`."""
        points, colors = self.converted(chunk, scan)
        if self.kind == "las":
            rec = chunk.raw
            names = list(rec.point_format.dimension_names)
            fields = {n: as_field(np.asarray(rec[n])) for n in names if n not in LAS_NOT_FIELDS}
            labels = (np.asarray(rec["classification"]).astype(np.int64)
                      if "classification" in names else None)
            part = PointCloud(points, colors, None, labels, fields, self.where,
                              label_scheme="asprs" if labels is not None else None)
        elif self._xyz is None:
            part = cloud_from_table(chunk.xyz, self.where, self.where)
        else:
            rows = chunk.raw
            part = cloud_from_named({n: rows[n] for n in rows.dtype.names},
                                    self.where, self.where)  # as io/arrays.py names them
            part.colors = colors
        part.points, part.offset, part.source = points, scan.offset, str(self.path)
        return part

    def _colors(self, rgb: np.ndarray, rgb_max: float) -> np.ndarray:
        if self.kind == "las":  # io/las.py: 8-bit values in 16-bit fields when none > 255
            scale = 255.0 if rgb_max <= 255 else 65535.0
            return (rgb.astype(np.float32) / scale).astype(np.float32)
        if rgb.dtype.kind in "ui":
            colors = rgb.astype(np.float32) / (65535.0 if rgb.dtype == np.uint16 else 255.0)
        else:
            colors = rgb.astype(np.float32)
            if rgb_max > 1.0:
                colors = colors / 255.0
        if colors.size and not (np.all(colors >= 0) and np.all(colors <= 1)):
            raise FormatError(f"{self.where}: colour values outside 0–1 and 0–255")
        return colors
