"""Writers for clouds users open elsewhere: PLY (Open3D, CloudCompare, MeshLab), LAS/LAZ (GIS
and LiDAR tools; io/las_write.py), NPY, NPZ and text. `write_points` picks one by suffix.

All go through `atomic_path`, so a failure never leaves a partial file. Coordinates are
written as the file gave them: a cloud with a non-zero `offset` (georeferenced, see
io/cloud.py) gets float64 `points + offset`, any other cloud float32 `points` as before.

PLY vertex properties, in order: x y z float (double with an offset); red green blue uchar
(colours × 255, rounded) if colours; nx ny nz float if normals; label int if labels
(under the file's own label name — `class`, … — or `classification` for LAS ASPRS codes:
`label_name`); then each
field by name — integer and bool fields as int, float64 fields as double, other float fields as
float. PLY has no 64-bit integers: integer values must fit in int32. `ply_safe_fields` turns
any fields the readers produce into ones `write_ply` takes (and says what it changed).
NPY: one structured array with named columns x y z (float32, float64 with an offset),
[red green blue (float32 0–1)] [nx ny nz] [label (int64)] and each field by name (`np.load(p)["x"]`):
named, so a column is never mistaken for labels or normals on reading (io/columns.py).
NPZ: arrays `points` (float32, float64 with an offset), `colors`, `normals`, `labels` (those
present) and each field by name.
TXT: a header line naming the columns (`x y z red green blue nx ny nz label FIELD…`, which
io/text.py reads by name), then one line per point: x y z with the decimals the coordinates
have (else float32/float64 round-trip digits), colours as 0–255 integers, integers as such.
(A cloud whose colours are all 0 or 1 of 255 reads back as 0–1 colours: text has no types.)
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..errors import InputError
from .arrays import NPZ_KEYS
from .atomic import atomic_path
from .cloud import PointCloud
from .columns import label_column
from .las_write import coordinate_scale, write_las

WRITERS = (".ply", ".las", ".laz", ".npy", ".npz", ".txt")
TEXT_CHUNK = 1 << 16  # rows formatted at a time
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RESERVED_PLY = {"x", "y", "z", "red", "green", "blue", "nx", "ny", "nz", "label"}


def _check(cloud: PointCloud, where: str, flat_fields: bool = True) -> int:
    n = len(cloud)
    if cloud.points.ndim != 2 or cloud.points.shape[1] != 3:
        raise InputError(f"{where}: points must be (N, 3), got {cloud.points.shape}")
    if np.shape(cloud.offset) != (3,):
        raise InputError(f"{where}: offset must be (3,), got {np.shape(cloud.offset)}")
    for name, value, shape in (("colors", cloud.colors, (n, 3)), ("normals", cloud.normals, (n, 3)),
                               ("labels", cloud.labels, (n,))):
        if value is not None and value.shape != shape:
            raise InputError(f"{where}: {name} has shape {value.shape}, expected {shape}")
    for name, value in cloud.fields.items():
        if value.shape[:1] != (n,) or (flat_fields and value.ndim != 1):
            raise InputError(f"{where}: field {name!r} has shape {value.shape}; only one value "
                             "per point can be written")
        if value.dtype.kind not in "uifb":
            raise InputError(f"{where}: field {name!r} of type {value.dtype} is not numeric")
    return n


def _as_int32(values: np.ndarray, name: str, where: str) -> np.ndarray:
    if values.size and (values.min() < -2**31 or values.max() >= 2**31):
        raise InputError(f"{where}: {name!r} values do not fit in a 32-bit PLY int")
    return values.astype("<i4")


def label_name(cloud: PointCloud) -> str:
    """The column labels are written under (`columns.label_column`): the file's own label
    name, `classification` for LAS ASPRS codes, else `label`."""
    return label_column(cloud)


def _xyz(cloud: PointCloud) -> np.ndarray:
    """The coordinates to write: float64 `points + offset` if there is an offset, else float32."""
    return cloud.absolute_points() if cloud.has_offset else cloud.points.astype(np.float32)


def _color_bytes(colors: np.ndarray) -> np.ndarray:
    return np.clip(np.round(colors.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)


def ply_columns(cloud: PointCloud, where: str) -> list[tuple[str, str, np.ndarray]]:
    """(name, PLY type, values) of each vertex property `write_ply` writes, in order (the
    module doc); the streamed writer (ply_stream.py) lays its rows out by the same list."""
    _check(cloud, where)
    columns: list[tuple[str, str, np.ndarray]] = []
    xyz = _xyz(cloud)
    xyz_kind, code = ("double", "<f8") if xyz.dtype == np.float64 else ("float", "<f4")
    columns += [(axis, xyz_kind, xyz[:, i].astype(code)) for i, axis in enumerate("xyz")]
    if cloud.colors is not None:
        rgb = _color_bytes(cloud.colors)
        columns += [(c, "uchar", rgb[:, i]) for i, c in enumerate(("red", "green", "blue"))]
    if cloud.normals is not None:
        columns += [(c, "float", cloud.normals[:, i].astype("<f4"))
                    for i, c in enumerate(("nx", "ny", "nz"))]
    if cloud.labels is not None:
        name = label_name(cloud)
        columns.append((name, "int", _as_int32(cloud.labels, name, where)))
    for name, values in cloud.fields.items():
        if not _NAME.match(name) or name in _RESERVED_PLY:
            raise InputError(f"{where}: field name {name!r} cannot be a PLY property "
                             "(letters, digits, _; not a reserved name)")
        if values.dtype.kind in "uib":
            columns.append((name, "int", _as_int32(values, name, where)))
        elif values.dtype.itemsize == 8:
            columns.append((name, "double", values.astype("<f8")))
        else:
            columns.append((name, "float", values.astype("<f4")))
    return columns


def ply_header(columns, n: int, binary: bool = True) -> bytes:
    """The header of a PLY file of `n` vertices with these `ply_columns`."""
    header = ["ply", f"format {'binary_little_endian' if binary else 'ascii'} 1.0",
              "comment written by pointgcn", f"element vertex {n}"]
    header += [f"property {kind} {name}" for name, kind, _ in columns]
    header.append("end_header")
    return ("\n".join(header) + "\n").encode("ascii")


def ply_rows(columns) -> np.ndarray:
    """The binary rows of these `ply_columns`, as one structured array (`file.write` takes it
    without a copy)."""
    n = len(columns[0][2])
    table = np.empty(n, np.dtype([(name, v.dtype) for name, _, v in columns]))
    for name, _, v in columns:
        table[name] = v
    return table


def write_ply(path: str | Path, cloud: PointCloud, binary: bool = True) -> None:
    """Write `cloud` as PLY (binary little endian by default, else ascii)."""
    columns = ply_columns(cloud, str(path))
    head = ply_header(columns, len(cloud), binary)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(head)
            if binary:
                f.write(ply_rows(columns))
            elif len(cloud):
                fmt = " ".join({"float": "%.9g", "double": "%.17g"}.get(kind, "%d")
                               for _, kind, _ in columns)
                np.savetxt(f, np.stack([v.astype(np.float64) for _, _, v in columns], axis=1),
                           fmt=fmt)


def _ply_name(name: str) -> str:
    """`name` as a PLY identifier: runs of other characters → "_", never a leading digit."""
    safe = re.sub(r"[^A-Za-z0-9_]+", "_", name) or "field"
    return safe if _NAME.match(safe) else "_" + safe


def ply_safe_fields(fields: dict[str, np.ndarray], reserved=(),
                    ) -> tuple[dict[str, np.ndarray], list[str]]:
    """Fields any reader produces → fields `write_ply` accepts, plus one note per change.

    Names become unique PLY identifiers ('Scalar field' → 'Scalar_field'; a reserved or taken
    name gets a suffix _2, _3 …); a field with several values per point, shape (N, k, …), is
    split into name_0 … name_{m-1}; integers beyond 32 bits become float64 (written as
    double); non-numeric fields are dropped. Names `write_ply` already takes are kept as they are.
    `reserved`: more names to avoid (a format's own keys, case-insensitive).
    """
    fields = {name: np.asarray(v) for name, v in fields.items()}
    avoid = _RESERVED_PLY | {r.lower() for r in reserved}
    keep = {name for name, v in fields.items() if _NAME.match(name)
            and name.lower() not in avoid and v.ndim == 1 and v.dtype.kind in "uifb"}
    taken = avoid | keep
    out: dict[str, np.ndarray] = {}
    notes: list[str] = []

    def claim(base: str) -> str:
        name, k = base, 2
        while name.lower() in taken or name in taken:
            name, k = f"{base}_{k}", k + 1
        taken.add(name)
        return name

    for name, values in fields.items():
        if values.dtype.kind not in "uifb" or values.ndim == 0 or 0 in values.shape[1:]:
            notes.append(f"field {name!r} dropped: not numbers per point")
            continue
        if name in keep:
            names, columns = [name], [values]
        elif values.ndim == 1:
            names, columns = [claim(_ply_name(name))], [values]
            notes.append(f"field {name!r} written as {names[0]!r} (field names are letters, "
                         "digits and _, and not x y z red … label)")
        else:
            columns = list(values.reshape(len(values), -1).T)
            names = [claim(f"{_ply_name(name)}_{i}") for i in range(len(columns))]
            shown = ", ".join(names) if len(names) <= 4 else f"{names[0]} … {names[-1]}"
            notes.append(f"field {name!r} has {len(names)} values per point: written as "
                         f"{len(names)} fields {shown}")
        for new_name, column in zip(names, columns):
            if column.dtype.kind in "ui" and column.size and (
                    column.min() < -2**31 or column.max() >= 2**31):
                column = column.astype(np.float64)
                notes.append(f"field {new_name!r}: integers beyond 32 bits written as double")
            out[new_name] = column
    return out, notes


def npy_columns(cloud: PointCloud) -> list[str]:
    """The column names `write_npy` writes for this cloud, in order."""
    names = ["x", "y", "z"]
    if cloud.colors is not None:
        names += ["red", "green", "blue"]
    if cloud.normals is not None:
        names += ["nx", "ny", "nz"]
    if cloud.labels is not None:
        names.append(label_name(cloud))
    return names + list(cloud.fields)


def npy_table(cloud: PointCloud, where: str) -> np.ndarray:
    """The structured array `write_npy` saves (the module doc)."""
    _check(cloud, where)
    clash = [n for n in cloud.fields if n.lower() in _RESERVED_PLY]
    if clash:
        raise InputError(f"{where}: field names {', '.join(clash)} clash with the columns "
                         "x y z red green blue nx ny nz label")
    xyz = _xyz(cloud)
    columns = [(axis, xyz[:, i]) for i, axis in enumerate("xyz")]
    for group, names in ((cloud.colors, ("red", "green", "blue")),
                         (cloud.normals, ("nx", "ny", "nz"))):
        if group is not None:
            columns += [(n, group[:, i].astype(np.float32)) for i, n in enumerate(names)]
    if cloud.labels is not None:
        columns.append((label_name(cloud), cloud.labels.astype(np.int64)))
    columns += list(cloud.fields.items())
    table = np.empty(len(cloud), np.dtype([(n, v.dtype) for n, v in columns]))
    for name, values in columns:
        table[name] = values
    return table


def write_npy(path: str | Path, cloud: PointCloud) -> list[str]:
    """Write the structured array described in the module doc; returns its column names."""
    table = npy_table(cloud, str(path))
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, table)
    return list(table.dtype.names)


def write_npz(path: str | Path, cloud: PointCloud) -> None:
    """Write the named arrays described in the module doc (uncompressed, loads without pickle)."""
    where = str(path)
    _check(cloud, where, flat_fields=False)
    reserved = {k for keys in NPZ_KEYS.values() for k in keys}
    clash = [k for k in cloud.fields if k.lower() in reserved]
    if clash:
        raise InputError(f"{where}: field names {', '.join(clash)} clash with npz keys "
                         f"{', '.join(sorted(reserved))}")
    arrays = {"points": _xyz(cloud)}
    for name in ("colors", "normals"):
        if getattr(cloud, name) is not None:
            arrays[name] = getattr(cloud, name)
    if cloud.labels is not None:
        name = label_name(cloud)
        key = name if name == "classification" or name.lower() in NPZ_KEYS["labels"] else "labels"
        arrays["labels" if key == "label" else key] = cloud.labels
    arrays.update(cloud.fields)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def txt_columns(cloud: PointCloud, where: str, decimals: int | None
                ) -> list[tuple[str, str, np.ndarray]]:
    """(name, %-format, values) of each column `write_txt` writes; `decimals`: those of the
    coordinates (`coordinate_scale`, a whole-cloud rule the caller settles)."""
    _check(cloud, where)
    for name in cloud.fields:
        if not _NAME.match(name) or name.lower() in _RESERVED_PLY:
            raise InputError(f"{where}: field name {name!r} cannot be a text column "
                             "(letters, digits, _; not a reserved name)")
    xyz = cloud.absolute_points()
    exact = "%.17g" if cloud.has_offset else "%.9g"  # float64 / float32 round-trip digits
    coordinate = exact if decimals is None else f"%.{decimals}f"
    columns = [(axis, coordinate, xyz[:, i]) for i, axis in enumerate("xyz")]
    if cloud.colors is not None:
        rgb = _color_bytes(cloud.colors)
        columns += [(c, "%d", rgb[:, i]) for i, c in enumerate(("red", "green", "blue"))]
    if cloud.normals is not None:
        columns += [(c, "%.9g", cloud.normals[:, i]) for i, c in enumerate(("nx", "ny", "nz"))]
    if cloud.labels is not None:
        columns.append((label_name(cloud), "%d", cloud.labels))
    for name, values in cloud.fields.items():
        kind = "%d" if values.dtype.kind in "uib" else (
            "%.17g" if values.dtype.itemsize == 8 else "%.9g")
        columns.append((name, kind, values))
    return columns


def txt_rows(f, columns) -> None:
    """Write the rows of these `txt_columns` to the text file `f`."""
    row = " ".join(k for _, k, _ in columns) + "\n"
    for start in range(0, len(columns[0][2]), TEXT_CHUNK):  # Python numbers format ≈ 4× faster
        part = [v[start:start + TEXT_CHUNK].tolist() for _, _, v in columns]  # than savetxt
        f.write("".join(row % values for values in zip(*part)))


def write_txt(path: str | Path, cloud: PointCloud) -> list[str]:
    """Write the named text table described in the module doc; returns its column names."""
    _, decimals = coordinate_scale(cloud.points)
    columns = txt_columns(cloud, str(path), decimals)
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="ascii") as f:
            f.write(" ".join(n for n, _, _ in columns) + "\n")
            txt_rows(f, columns)
    return [n for n, _, _ in columns]


def output_fields(suffix: str, fields: dict[str, np.ndarray]) -> tuple[dict, list[str]]:
    """The fields a writer for `suffix` takes (`ply_safe_fields`; npz also avoids its keys),
    with a note per change: settle them before the work, so writing cannot fail on a name."""
    reserved = {k for keys in NPZ_KEYS.values() for k in keys} if suffix == ".npz" else ()
    return ply_safe_fields(fields, reserved)


def write_points(path: str | Path, cloud: PointCloud, *, template: str | Path | None = None,
                 classification: str | None = None) -> list[str]:
    """Write by suffix: .ply (binary), .las/.laz, .npy, .npz or .txt; returns notes on choices
    made (LAS: format and scale). `template`, `classification`: LAS only (io/las_write.py)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".ply":
        write_ply(path, cloud)
    elif suffix in (".las", ".laz"):
        return write_las(path, cloud, template=template, classification=classification)
    elif suffix == ".npy":
        write_npy(path, cloud)
    elif suffix == ".npz":
        write_npz(path, cloud)
    elif suffix == ".txt":
        write_txt(path, cloud)
    else:
        raise InputError(f"{path}: cannot write {suffix or 'files without an extension'}; "
                         f"supported: {' '.join(WRITERS)}")
    return []
