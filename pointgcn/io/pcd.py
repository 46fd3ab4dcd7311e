"""PCD (PCL's format, v0.5–0.7) reader: DATA ascii (space- or, as PDAL writes it,
comma-separated), binary (bytes after the last point are ignored with a note, as PCL does) and
binary_compressed.

Why our own (measured, benchmarks/bench_readers.py, one run, 2M binary points): pypcd4 refuses
PDAL's comma-separated ascii, accepts truncated binary files and takes 231 ms where this takes
134; Open3D keeps only xyz/rgb/normals (PCL users' clouds carry `label`, `intensity` and more),
silently returns an empty or wrong cloud on such files, and is 16× slower. The header's
FIELDS/SIZE/TYPE/COUNT give a numpy structured dtype; binary is one `np.frombuffer` over the
memory-mapped file, binary_compressed is LZF (decoded here in pure Python: slower than binary,
fine for typical scans) of the same data stored field by field. Packed `rgb`/`rgba` (float
bits or uint32, 0x00RRGGBB) → red green blue; in ascii a TYPE F rgb column of integers is
PCL's packed uint32 (see `_ascii_packed_float`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import FormatError
from .mapped import map_file
from .cloud import PointCloud
from .columns import cloud_from_named

MAX_HEADER = 1 << 16
KEYS = ("VERSION", "FIELDS", "SIZE", "TYPE", "COUNT", "WIDTH", "HEIGHT", "VIEWPOINT", "POINTS",
        "DATA")


def _header(data: bytes, where: str) -> tuple[dict[str, list[str]], int]:
    head: dict[str, list[str]] = {}
    pos = 0
    while True:
        end = data.find(b"\n", pos, MAX_HEADER)
        if end < 0:
            raise FormatError(f"{where}: PCD header has no DATA line (truncated or garbled)")
        try:
            line = data[pos:end].decode("ascii").strip()
        except UnicodeDecodeError:
            raise FormatError(f"{where}: PCD header has no DATA line before binary bytes "
                              "(truncated or garbled)") from None
        pos = end + 1
        if not line or line.startswith("#"):
            continue
        key, *values = line.split()
        if key not in KEYS:
            raise FormatError(f"{where}: garbled PCD header line {line[:60]!r}")
        head[key] = values
        if key == "DATA":
            return head, pos


def _dtype(head: dict[str, list[str]], where: str) -> np.dtype:
    names = head.get("FIELDS")
    if not names:
        raise FormatError(f"{where}: PCD header has no FIELDS")
    sizes, types = head.get("SIZE", []), head.get("TYPE", [])
    counts = head.get("COUNT", ["1"] * len(names))
    if not len(names) == len(sizes) == len(types) == len(counts):
        raise FormatError(f"{where}: PCD header FIELDS/SIZE/TYPE/COUNT lengths differ")
    parts = []
    for i, (name, size, kind, count) in enumerate(zip(names, sizes, types, counts)):
        if kind not in ("I", "U", "F") or size not in ("1", "2", "4", "8") or not count.isdigit() \
                or (kind == "F" and size not in ("4", "8")) or int(count) < 1:
            raise FormatError(f"{where}: PCD field {name!r} has bad SIZE/TYPE/COUNT "
                              f"{size}/{kind}/{count}")
        code = "<" + {"I": "i", "U": "u", "F": "f"}[kind] + size
        unique = name if name != "_" else f"_pad{i}"
        if any(unique == p[0] for p in parts):
            raise FormatError(f"{where}: PCD field {name!r} appears twice")
        parts.append((unique, code) if count == "1" else (unique, code, (int(count),)))
    return np.dtype(parts)


def _point_count(head: dict[str, list[str]], where: str) -> int:
    """POINTS, checked against WIDTH×HEIGHT. As in PCL, a missing HEIGHT is 1 and a missing
    WIDTH is POINTS / HEIGHT (an unorganised cloud); POINTS or WIDTH must be there."""
    try:
        height = int(head.get("HEIGHT", ["1"])[0])
        if "WIDTH" in head:
            width = int(head["WIDTH"][0])
            points = int(head.get("POINTS", [str(width * height)])[0])
        else:
            points = int(head["POINTS"][0])
            width = points // height if height > 0 else -1
    except (KeyError, IndexError, ValueError):
        raise FormatError(f"{where}: PCD header has a missing or non-integer WIDTH/HEIGHT/POINTS"
                          ) from None
    if points != width * height or points < 0:
        raise FormatError(f"{where}: PCD header says POINTS {points} but WIDTH×HEIGHT is "
                          f"{width}×{height}")
    return points


def lzf_decompress(src: bytes, size: int, where: str) -> bytes:
    """LZF (liblzf) decoder: literal runs and back-references, checked against `size`."""
    out = bytearray(size)
    i = o = 0
    n = len(src)
    try:
        while i < n:
            ctrl = src[i]
            i += 1
            if ctrl < 32:  # literal run of ctrl + 1 bytes
                length = ctrl + 1
                if i + length > n or o + length > size:
                    raise IndexError
                out[o:o + length] = src[i:i + length]
                i += length
                o += length
                continue
            length = ctrl >> 5
            ref = o - ((ctrl & 0x1F) << 8) - 1
            if length == 7:
                length += src[i]
                i += 1
            ref -= src[i]
            i += 1
            length += 2
            if ref < 0 or o + length > size:
                raise IndexError
            if ref + length <= o:
                out[o:o + length] = out[ref:ref + length]
            else:  # overlapping copy repeats the last bytes
                for k in range(length):
                    out[o + k] = out[ref + k]
            o += length
    except IndexError:
        raise FormatError(f"{where}: corrupt binary_compressed PCD data") from None
    if o != size:
        raise FormatError(f"{where}: binary_compressed PCD data decodes to {o} bytes, "
                          f"header says {size}")
    return bytes(out)


def _records(data: bytes, pos: int, mode: str, dtype: np.dtype, count: int, where: str,
             notes: list[str]):
    if mode == "binary":
        need = count * dtype.itemsize
        if len(data) - pos < need:
            raise FormatError(f"{where}: PCD data is truncated ({len(data) - pos} of {need} "
                              f"bytes for {count} points)")
        if data[pos + need:].strip(b" \r\n\t"):  # PCL reads such files too: say, don't refuse
            notes.append(f"{where}: {len(data) - pos - need} bytes after the last of the "
                         f"{count} points the header declares were ignored")
        return np.frombuffer(data, dtype, count, pos)
    if mode == "binary_compressed":
        if len(data) - pos < 8:
            raise FormatError(f"{where}: binary_compressed PCD data is truncated")
        packed, size = np.frombuffer(data, "<u4", 2, pos)
        if size != count * dtype.itemsize:
            raise FormatError(f"{where}: binary_compressed size {size} does not match POINTS "
                              f"{count} × {dtype.itemsize} bytes")
        if len(data) - pos - 8 < packed:
            raise FormatError(f"{where}: binary_compressed PCD data is truncated")
        raw = lzf_decompress(data[pos + 8:pos + 8 + int(packed)], int(size), where)
        records = np.empty(count, dtype)
        offset = 0
        for name in dtype.names:  # stored field by field (column-major)
            sub = dtype.fields[name][0]
            records[name] = np.frombuffer(raw, sub, count, offset).reshape(records[name].shape)
            offset += sub.itemsize * count
        return records
    if mode != "ascii":
        raise FormatError(f"{where}: unknown PCD DATA type {mode!r}")
    text = data[pos:].decode("ascii", errors="replace")
    first = data[:pos].count(b"\n") + 1
    lines = [(first + i, t) for i, t in enumerate(text.split("\n")) if t.strip()]
    width = sum(int(np.prod(dtype.fields[n][0].shape or (1,))) for n in dtype.names)
    if len(lines) != count:
        raise FormatError(f"{where}: PCD header says {count} points, file has {len(lines)} rows")
    if count == 0:  # nothing to parse (np.loadtxt would warn); read_points says "no points"
        return np.empty(0, dtype)
    comma = bool(lines) and "," in lines[0][1]  # PDAL writes comma-separated ascii PCD
    try:
        table = np.loadtxt([t for _, t in lines], dtype=np.float64, ndmin=2, comments=None,
                           delimiter="," if comma else None)
    except ValueError:
        table = None
    if table is None or table.shape[1] != width:
        for number, t in lines:
            tokens = [v.strip() for v in t.split(",")] if comma else t.split()
            try:
                [float(v) for v in tokens]
            except ValueError:
                raise FormatError(f"{where}: line {number}: non-numeric value") from None
            if len(tokens) != width:
                raise FormatError(f"{where}: line {number}: {len(tokens)} values, expected {width}")
        raise FormatError(f"{where}: unreadable PCD data")
    records = np.empty(count, dtype)
    col = 0
    for name in dtype.names:
        sub = dtype.fields[name][0]
        k = int(np.prod(sub.shape or (1,)))
        values = table[:, col:col + k].reshape(records[name].shape)
        base = sub.base if sub.shape else sub
        if name.lower() in ("rgb", "rgba") and base.kind == "f":
            values = _ascii_packed_float(values)
        records[name] = values
        col += k
    return records


def _ascii_packed_float(values: np.ndarray) -> np.ndarray:
    """A TYPE F rgb column in ascii: PCL writes the packed uint32 as an integer (its float bits
    with alpha 255 would be NaN), others write the float whose bits are packed; integers → bits."""
    finite = values[np.isfinite(values)]
    if finite.size and np.all(finite == np.round(finite)) and finite.min() >= 0 \
            and finite.max() < 2.0 ** 32:
        return np.nan_to_num(values).astype(np.uint32).view(np.float32)
    return values.astype(np.float32)


def _unpack_rgb(values: np.ndarray) -> dict[str, np.ndarray]:
    bits = values.astype(np.float32).view(np.uint32) if values.dtype.kind == "f" \
        else values.astype(np.uint32)
    return {"red": ((bits >> 16) & 255).astype(np.uint8),
            "green": ((bits >> 8) & 255).astype(np.uint8),
            "blue": (bits & 255).astype(np.uint8)}


def read_pcd_columns(path: Path, where: str, notes: list[str] | None = None,
                     modes: list[str] | None = None) -> dict[str, np.ndarray]:
    """The file's fields by name (packed rgb unpacked); its DATA mode goes to `modes`."""
    data = map_file(path)
    head, pos = _header(data, where)
    dtype = _dtype(head, where)
    count = _point_count(head, where)
    mode = (head["DATA"] or [""])[0].lower()
    if modes is not None:
        modes.append(mode)
    records = _records(data, pos, mode, dtype, count, where, notes if notes is not None else [])
    columns: dict[str, np.ndarray] = {}
    for name in dtype.names:
        if name.startswith("_pad"):
            continue
        if name.lower() in ("rgb", "rgba") and records[name].ndim == 1:
            columns.update(_unpack_rgb(records[name]))
        else:
            columns[name] = np.array(records[name])
    return columns


def read_pcd(path: Path, where: str, notes: list[str] | None = None) -> tuple[PointCloud, str]:
    """The cloud and the PCD DATA mode it was stored in; what was tolerated goes to `notes`."""
    modes: list[str] = []
    columns = read_pcd_columns(path, where, notes, modes)
    return cloud_from_named(columns, where, str(path)), modes[0]
