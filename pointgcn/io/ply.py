"""PLY parser (ascii, binary_little_endian, binary_big_endian) straight into numpy.

Why our own: Open3D keeps no unknown vertex property (label, pred, …), shifts rows in files
that declare z before x or y (its row index advances when it reads z), and answers a bad file
with a warning and an empty cloud; plyfile is not a dependency. Here every problem is a
FormatError naming the file: truncated data, element counts that disagree with the body,
garbled headers. Binary elements of scalars are one `np.frombuffer` with a structured dtype
built from the header; list elements (faces) take the same fast path when every list has the
length of the first one (all triangles, all quads) and a per-row Python walk otherwise (slow,
docs/performance.md), so any element in any position is skipped or read correctly. Ascii
bodies are parsed one element row per line.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import FormatError

PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}
FORMATS = {"ascii": None, "binary_little_endian": "<", "binary_big_endian": ">"}
FACE_LISTS = ("vertex_indices", "vertex_index")
MAX_HEADER = 1 << 20


@dataclass
class PlyProperty:
    name: str
    dtype: str                     # numpy type code without byte order, e.g. "f4"
    count_dtype: str | None = None  # set for `property list <count> <item> name`


@dataclass
class PlyElement:
    name: str
    count: int
    properties: list[PlyProperty] = field(default_factory=list)


@dataclass
class PlyHeader:
    format: str
    elements: list[PlyElement]
    data_offset: int


@dataclass
class PlyData:
    """What the point readers need: the vertex columns and triangulated faces (if any)."""

    format: str
    vertex: dict[str, np.ndarray]
    faces: np.ndarray | None  # (F, 3) int64 after fan triangulation; None without a face element


def parse_header(data: bytes, where: str) -> PlyHeader:
    """Parse and check the header; every problem is a one-line FormatError naming `where`."""
    if not (data.startswith(b"ply\n") or data.startswith(b"ply\r\n")):
        raise FormatError(f"{where}: not a PLY file (first line is not 'ply')")
    end = data.find(b"end_header", 0, MAX_HEADER)
    if end < 0:
        raise FormatError(f"{where}: PLY header has no 'end_header' line (truncated or garbled)")
    offset = end + len(b"end_header")
    if data[offset:offset + 2] == b"\r\n":
        offset += 2
    elif data[offset:offset + 1] == b"\n":
        offset += 1
    elif offset != len(data):
        raise FormatError(f"{where}: garbled PLY header: 'end_header' is not a line of its own")
    try:
        text = data[:end].decode("ascii")
    except UnicodeDecodeError:
        raise FormatError(f"{where}: garbled PLY header (non-ASCII bytes)") from None
    fmt, elements = None, []
    for number, line in enumerate(text.splitlines(), start=1):
        tokens = line.split()
        if number == 1 or not tokens or tokens[0] in ("comment", "obj_info"):
            continue
        bad = f"{where}: garbled PLY header line {number}: {line.strip()[:60]!r}"
        key = tokens[0]
        if key == "format":
            if len(tokens) != 3 or tokens[1] not in FORMATS:
                raise FormatError(bad)
            fmt = tokens[1]
        elif key == "element":
            if len(tokens) != 3 or not tokens[2].isdigit():
                raise FormatError(bad)
            elements.append(PlyElement(tokens[1], int(tokens[2])))
        elif key == "property":
            if not elements:
                raise FormatError(f"{where}: PLY header line {number}: property before element")
            if len(tokens) == 3 and tokens[1] in PLY_TYPES:
                prop = PlyProperty(tokens[2], PLY_TYPES[tokens[1]])
            elif (len(tokens) == 5 and tokens[1] == "list" and tokens[2] in PLY_TYPES
                  and tokens[3] in PLY_TYPES and PLY_TYPES[tokens[2]][0] in "ui"):
                prop = PlyProperty(tokens[4], PLY_TYPES[tokens[3]], PLY_TYPES[tokens[2]])
            else:
                raise FormatError(bad)
            if any(p.name == prop.name for p in elements[-1].properties):
                raise FormatError(f"{where}: PLY header line {number}: duplicate property "
                                  f"{prop.name!r}")
            elements[-1].properties.append(prop)
        else:
            raise FormatError(bad)
    if fmt is None:
        raise FormatError(f"{where}: PLY header has no 'format' line")
    return PlyHeader(fmt, elements, offset)


# ---------------------------------------------------------------- binary bodies

def _fixed_dtype(element: PlyElement, order: str, list_lengths: dict[str, int]) -> np.dtype:
    parts = []
    for p in element.properties:
        if p.count_dtype is None:
            parts.append((p.name, order + p.dtype))
        else:
            parts.append(("__n_" + p.name, order + p.count_dtype))
            parts.append((p.name, order + p.dtype, (list_lengths[p.name],)))
    return np.dtype(parts)


def _first_row_list_lengths(data: bytes, pos: int, element: PlyElement, order: str,
                            where: str):
    """Length of each list property in the element's first row; None if the data ends first."""
    lengths = {}
    for p in element.properties:
        if p.count_dtype is None:
            pos += np.dtype(p.dtype).itemsize
            continue
        size = np.dtype(p.count_dtype).itemsize
        if pos + size > len(data):
            return None
        lengths[p.name] = int(np.frombuffer(data, order + p.count_dtype, 1, pos)[0])
        if lengths[p.name] < 0:
            raise _negative_count(where, element, p)
        pos += size + lengths[p.name] * np.dtype(p.dtype).itemsize
    return lengths


def _columns(rows: np.ndarray, element: PlyElement) -> dict:
    out = {}
    for p in element.properties:
        if p.count_dtype is None:
            out[p.name] = rows[p.name]
        else:
            out[p.name] = (rows["__n_" + p.name].astype(np.int64), rows[p.name].reshape(-1))
    return out


def _read_binary_element(data: bytes, pos: int, element: PlyElement, order: str, where: str):
    """Return ({name: array, or (counts, flat) for lists}, position after the element).

    Fast path: one structured read, assuming every list is as long as in the first row
    (checked afterwards); otherwise walk the rows one by one.
    """
    lists = [p for p in element.properties if p.count_dtype is not None]
    lengths = ({p.name: 0 for p in lists} if not (lists and element.count)
               else _first_row_list_lengths(data, pos, element, order, where))
    if lengths is not None:
        dtype = _fixed_dtype(element, order, lengths)
        need = dtype.itemsize * element.count
        if pos + need <= len(data):
            rows = np.frombuffer(data, dtype, element.count, pos)
            if all(np.all(rows["__n_" + p.name] == lengths[p.name]) for p in lists):
                return _columns(rows, element), pos + need
        if not lists:
            raise _truncated(where, element, len(data) - pos, need)
    return _walk_binary_rows(data, pos, element, order, where)


def _walk_binary_rows(data: bytes, pos: int, element: PlyElement, order: str, where: str):
    """Row-by-row reader for elements whose lists vary in length (e.g. mixed tris and quads)."""
    view = memoryview(data)
    scalars = {p.name: np.empty(element.count, p.dtype) for p in element.properties
               if p.count_dtype is None}
    counts = {p.name: np.empty(element.count, np.int64) for p in element.properties
              if p.count_dtype is not None}
    chunks: dict[str, list[np.ndarray]] = {name: [] for name in counts}
    for i in range(element.count):
        for p in element.properties:
            if p.count_dtype is None:
                size = np.dtype(p.dtype).itemsize
                if pos + size > len(data):
                    raise _truncated(where, element, None)
                scalars[p.name][i] = np.frombuffer(view, order + p.dtype, 1, pos)[0]
                pos += size
                continue
            size = np.dtype(p.count_dtype).itemsize
            if pos + size > len(data):
                raise _truncated(where, element, None)
            n = int(np.frombuffer(view, order + p.count_dtype, 1, pos)[0])
            if n < 0:
                raise _negative_count(where, element, p)
            pos += size
            item = np.dtype(p.dtype).itemsize
            if pos + n * item > len(data):
                raise _truncated(where, element, None)
            chunks[p.name].append(np.frombuffer(view, order + p.dtype, n, pos))
            counts[p.name][i] = n
            pos += n * item
    out: dict = dict(scalars)
    for name in counts:
        flat = np.concatenate(chunks[name]) if chunks[name] else np.empty(0, np.int64)
        out[name] = (counts[name], flat)
    return out, pos


def _negative_count(where: str, element: PlyElement, prop: PlyProperty) -> FormatError:
    return FormatError(f"{where}: negative list length in property {prop.name!r} of element "
                       f"{element.name!r}")


def _truncated(where: str, element: PlyElement, have: int | None, need: int | None = None):
    detail = f" ({have} of {need} bytes)" if need is not None else ""
    return FormatError(f"{where}: PLY data ends inside element {element.name!r} "
                       f"(truncated, or the header's count {element.count} is wrong){detail}")


# ---------------------------------------------------------------- ascii bodies

def _read_ascii_element(lines: list[tuple[int, str]], start: int, element: PlyElement,
                        where: str):
    stop = start + element.count
    if stop > len(lines):
        raise FormatError(f"{where}: PLY element {element.name!r} declares {element.count} rows "
                          f"but the file has {len(lines) - start} (truncated or wrong count)")
    rows = lines[start:stop]
    props = element.properties
    if all(p.count_dtype is None for p in props):
        if not rows:
            return {p.name: np.empty(0, p.dtype) for p in props}, stop
        try:
            table = np.loadtxt([text for _, text in rows], dtype=np.float64, ndmin=2,
                               comments=None)
        except ValueError:
            table = None
        if table is None or table.shape[1] != len(props):
            for number, text in rows:
                tokens = text.split()
                try:
                    [float(t) for t in tokens]
                except ValueError:
                    raise FormatError(f"{where}: line {number}: non-numeric value in element "
                                      f"{element.name!r}") from None
                if len(tokens) != len(props):
                    raise FormatError(f"{where}: line {number}: {len(tokens)} values, element "
                                      f"{element.name!r} has {len(props)} properties")
            raise FormatError(f"{where}: unreadable element {element.name!r}")
        return {p.name: _cast(table[:, j], p.dtype) for j, p in enumerate(props)}, stop
    values: dict[str, list] = {p.name: [] for p in props}
    counts: dict[str, list] = {p.name: [] for p in props if p.count_dtype is not None}
    for number, text in rows:
        tokens = text.split()
        k = 0
        try:
            for p in props:
                if p.count_dtype is None:
                    values[p.name].append(float(tokens[k]))
                    k += 1
                else:
                    n = int(tokens[k])
                    if n < 0:
                        raise ValueError
                    values[p.name].extend(float(t) for t in tokens[k + 1:k + 1 + n])
                    counts[p.name].append(n)
                    if k + 1 + n > len(tokens):
                        raise IndexError
                    k += 1 + n
        except (ValueError, IndexError):
            raise FormatError(f"{where}: line {number}: malformed row of element "
                              f"{element.name!r}") from None
        if k != len(tokens):
            raise FormatError(f"{where}: line {number}: {len(tokens) - k} extra values in a row "
                              f"of element {element.name!r}")
    out: dict = {}
    for p in props:
        arr = _cast(np.asarray(values[p.name], np.float64), p.dtype)
        out[p.name] = arr if p.count_dtype is None else (np.asarray(counts[p.name], np.int64), arr)
    return out, stop


def _cast(values: np.ndarray, dtype: str) -> np.ndarray:
    if np.dtype(dtype).kind in "ui":
        if values.size and not np.all(values == np.round(values)):
            raise FormatError("non-integer value in an integer PLY property")
        info = np.iinfo(dtype)
        if values.size and (values.min() < info.min or values.max() > info.max):
            raise FormatError(f"value out of range for a {dtype} PLY property")
    return values.astype(dtype)


# ---------------------------------------------------------------- whole file

def read_elements(path: Path, where: str) -> tuple[PlyHeader, dict[str, dict]]:
    """Every element of the file: {element: {property: array | (counts, flat) for lists}}."""
    data = path.read_bytes()
    header = parse_header(data, where)
    out: dict[str, dict] = {}
    order = FORMATS[header.format]
    if order is None:
        try:
            body = data[header.data_offset:].decode("ascii")
        except UnicodeDecodeError:
            raise FormatError(f"{where}: non-ASCII bytes in an ascii PLY body") from None
        first = data[:header.data_offset].count(b"\n") + 1
        lines = [(first + i, t) for i, t in enumerate(body.split("\n")) if t.strip()]
        pos = 0
        for element in header.elements:
            try:
                out[element.name], pos = _read_ascii_element(lines, pos, element, where)
            except FormatError as e:
                if str(e).startswith(where):
                    raise
                raise FormatError(f"{where}: element {element.name!r}: {e}") from None
        if pos != len(lines):
            raise FormatError(f"{where}: line {lines[pos][0]}: data after the last element "
                              f"(the header's element counts do not match the body)")
    else:
        pos = header.data_offset
        for element in header.elements:
            out[element.name], pos = _read_binary_element(data, pos, element, order, where)
        if data[pos:].strip(b" \r\n\t"):
            raise FormatError(f"{where}: {len(data) - pos} bytes after the last element "
                              f"(the header's element counts do not match the body)")
    return header, out


def triangulate(counts: np.ndarray, flat: np.ndarray, where: str) -> np.ndarray:
    """Polygon lists (counts, flat indices) → (F, 3) int64 triangles by fan triangulation."""
    if counts.size and counts.min() < 3:
        raise FormatError(f"{where}: a face has fewer than 3 vertices")
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    flat = flat.astype(np.int64)
    triangles = []
    for k in np.unique(counts):
        base = offsets[counts == k]
        polygon = flat[base[:, None] + np.arange(k)]
        fan = np.stack([np.repeat(polygon[:, :1], k - 2, axis=1), polygon[:, 1:-1],
                        polygon[:, 2:]], axis=2)
        triangles.append(fan.reshape(-1, 3))
    return np.concatenate(triangles) if triangles else np.empty((0, 3), np.int64)


def read_ply(path: Path, where: str | None = None) -> PlyData:
    """The vertex element's columns and the face element's triangles (if the file has faces)."""
    where = where or str(path)
    header, elements = read_elements(path, where)
    if "vertex" not in elements:
        raise FormatError(f"{where}: PLY file has no 'vertex' element")
    vertex = {k: v for k, v in elements["vertex"].items() if not isinstance(v, tuple)}
    faces = None
    if "face" in elements:
        lists = [k for k in FACE_LISTS if k in elements["face"]]
        if not lists or not isinstance(elements["face"][lists[0]], tuple):
            raise FormatError(f"{where}: PLY face element has no vertex_indices list")
        faces = triangulate(*elements["face"][lists[0]], where)
        n = len(next(iter(vertex.values()))) if vertex else 0
        if faces.size and (faces.min() < 0 or faces.max() >= n):
            raise FormatError(f"{where}: a face refers to a vertex index outside 0..{n - 1}")
    return PlyData(header.format, vertex, faces)
