"""Turn named per-point columns (PLY/PCD properties, CSV headers, npz keys) or a headerless
numeric table into a `PointCloud`: one place for the naming and colour rules every reader shares.

Named columns: x y z (required); red green blue | r g b | diffuse_* → colors; nx ny nz |
normal_x … → normals; label | class | scalar_label | scalar_class → labels (must be integers;
NaN in a float column is unlabelled, −1);
alpha is dropped; anything else (e.g. pred, intensity) → `fields` under its own name, except
non-numeric columns (a structured .npy's string `name`), which are skipped: they cannot be
per-point numbers. x y z, colour, normal and label columns must be numeric (else FormatError).

Headerless tables (txt/csv/npy) by column count:
  3  x y z                      4  x y z scalar
  6  x y z r g b                7  x y z r g b scalar
  9  x y z r g b nx ny nz       10 x y z r g b nx ny nz scalar
  A trailing column without a name is kept as the field `scalar`, never read as labels: it is
  as often intensity, alpha (CloudCompare's `x y z r g b a`) or a class id of another scheme,
  and metrics against a misread column would be garbage. Labels come only from a column named
  as one (a header, PLY/PCD property, npz key, structured .npy field); stages that score take
  `--labels FIELD` to name another.
  With 6 or 7 columns, columns 4–6 are nx ny nz instead when every row of them has unit length
  and some value is negative: colours are never negative, while pure primaries such as (1, 0, 0)
  do have unit length. Normals that all lie in the positive octant (one plane facing +z) are
  therefore read as colours; `write_npy` names its columns, so its files are never ambiguous.

Colours: integer types are divided by their range (uint8 → 255, uint16 → 65535, other integers
must lie in 0–255); floats are taken as 0–1 unless some value exceeds 1, then as 0–255.
"""
from __future__ import annotations

import logging
from typing import Mapping

import numpy as np

from ..errors import FormatError, InputError
from .cloud import PointCloud

log = logging.getLogger(__name__)

XYZ = ("x", "y", "z")
COLOR_NAMES = (("red", "green", "blue"), ("r", "g", "b"),
               ("diffuse_red", "diffuse_green", "diffuse_blue"))
NORMAL_NAMES = (("nx", "ny", "nz"), ("normal_x", "normal_y", "normal_z"))
LABEL_NAMES = ("label", "class", "scalar_label", "scalar_class")
NUMERIC = "uifb"  # numpy dtype kinds a per-point column may have
DROPPED_NAMES = ("alpha", "a", "diffuse_alpha")

# Headerless layouts: column count → names (the 6-column normals case is decided per file).
LAYOUTS = {
    3: XYZ,
    4: XYZ + ("scalar",),
    6: XYZ + ("red", "green", "blue"),
    7: XYZ + ("red", "green", "blue", "scalar"),
    9: XYZ + ("red", "green", "blue", "nx", "ny", "nz"),
    10: XYZ + ("red", "green", "blue", "nx", "ny", "nz", "scalar"),
}
LAYOUT_HELP = ("3 (x y z), 4 (x y z scalar), 6 (x y z r g b), 7 (x y z r g b scalar), "
               "9 (x y z r g b nx ny nz) or 10 (… scalar)")


def _find(lower: Mapping[str, str], groups) -> tuple[str, ...] | None:
    """The original names of the first group whose names are all present (case-insensitive)."""
    for group in groups:
        if all(n in lower for n in group):
            return tuple(lower[n] for n in group)
    return None


def normalize_colors(rgb: np.ndarray, where: str) -> np.ndarray:
    """(N, 3) colours of any numeric dtype → float32 in [0, 1] by the rule in the module doc."""
    if rgb.dtype.kind in "ui":
        scale = 65535.0 if rgb.dtype == np.uint16 else 255.0
        colors = rgb.astype(np.float32) / scale
    else:
        colors = rgb.astype(np.float32)
        finite = colors[np.isfinite(colors)]
        if finite.size and finite.max() > 1.0:
            colors = colors / 255.0
    if colors.size and not (np.all(colors >= 0) and np.all(colors <= 1)):
        raise FormatError(f"{where}: colour values outside 0–1 and 0–255")
    return colors


def as_labels(values: np.ndarray, where: str, name: str = "label") -> np.ndarray:
    """Integer class ids as int64; float columns are accepted when every value is integral.
    NaN in a float column is an unlabelled point: −1, the project's mark for unlabelled
    (metrics and adaptation skip labels < 0), said in a note."""
    if values.dtype.kind in "uib":
        return values.astype(np.int64)
    missing = np.isnan(values)
    known = values[~missing]
    if not np.all(np.isfinite(known)) or not np.all(known == np.round(known)):
        raise FormatError(f"{where}: {name!r} values are not integers")
    if missing.any():
        log.warning("%s: %d of %d %r values are NaN: read as unlabelled (−1)", where,
                    int(missing.sum()), len(values), name)
        return np.where(missing, -1, np.nan_to_num(values)).astype(np.int64)
    return values.astype(np.int64)


def as_field(values: np.ndarray) -> np.ndarray:
    """Extra fields (every reader's): flags and integers → int64, float64 stays (GPS time,
    scaled extra bytes), other floats → float32."""
    if values.dtype.kind in "uib":
        return values.astype(np.int64)
    return values.astype(np.float64 if values.dtype.itemsize == 8 else np.float32)


def cloud_from_named(columns: Mapping[str, np.ndarray], where: str, source: str = "",
                     ) -> PointCloud:
    """Named per-point arrays (all the same length) → PointCloud by the naming rule above."""
    columns = {n: np.asarray(v) for n, v in columns.items()}
    lower = {}
    for name in columns:
        lower.setdefault(name.lower(), name)
    xyz = _find(lower, (XYZ,))
    if xyz is None:
        raise FormatError(f"{where}: no x y z columns (has: {', '.join(columns) or 'none'})")
    rgb = _find(lower, COLOR_NAMES)
    nxyz = _find(lower, NORMAL_NAMES)
    label = next((lower[n] for n in LABEL_NAMES if n in lower), None)
    known = xyz + (rgb or ()) + (nxyz or ()) + ((label,) if label else ())
    for name in known:
        if columns[name].dtype.kind not in NUMERIC:
            raise FormatError(f"{where}: column {name!r} holds {columns[name].dtype}, "
                              "not numbers")
    used = set(known)
    points = np.stack([columns[n].astype(np.float64) for n in xyz], axis=1)  # see read.py
    colors = normals = labels = None
    if rgb is not None:
        colors = normalize_colors(np.stack([columns[n] for n in rgb], axis=1), where)
    if nxyz is not None:
        normals = np.stack([columns[n].astype(np.float32) for n in nxyz], axis=1)
    if label is not None:
        labels = as_labels(columns[label], where, label)
    used.update(lower[n] for n in DROPPED_NAMES if n in lower)
    fields = {n: as_field(v) for n, v in columns.items()
              if n not in used and v.dtype.kind in NUMERIC}
    return PointCloud(np.ascontiguousarray(points), colors, normals, labels, fields, source,
                      label_field=label)


def _looks_like_normals(block: np.ndarray) -> bool:
    """Every row of unit length and some value negative (the rule in the module doc)."""
    norms = np.linalg.norm(block.astype(np.float64), axis=1)
    return (bool(norms.size) and bool(np.all(np.abs(norms - 1.0) < 1e-2))
            and bool(np.any(block < 0)))


def table_columns(table: np.ndarray, names) -> dict[str, np.ndarray]:
    """The columns of an (N, C) table by name. A float64 table (parsed text, a float64 .npy)
    declares no precision per column: x y z stay float64 (read_points decides how to store
    them), every other column becomes float32."""
    return {n: table[:, i] if n.lower() in XYZ or table.dtype != np.float64
            else table[:, i].astype(np.float32) for i, n in enumerate(names)}


def cloud_from_table(table: np.ndarray, where: str, source: str = "") -> PointCloud:
    """A headerless (N, C) numeric table → PointCloud by the column-count rule above."""
    if table.ndim != 2 or table.shape[1] not in LAYOUTS:
        shape = "x".join(map(str, table.shape))
        raise FormatError(f"{where}: {shape} values; expected N rows of {LAYOUT_HELP} columns")
    names = LAYOUTS[table.shape[1]]
    if table.shape[1] in (6, 7) and _looks_like_normals(table[:, 3:6]):
        names = XYZ + ("nx", "ny", "nz") + names[6:]
    return cloud_from_named(table_columns(table, names), where, source)


def label_column(cloud: PointCloud) -> str:
    """The column name writers give labels: the file's own (`class`, `scalar_label`, …) when
    it is one the readers take as labels, `classification` for LAS ASPRS codes (which the
    readers then keep as a field, never a model's classes), else `label`."""
    if cloud.label_scheme == "asprs":
        return "classification"
    name = cloud.label_field
    ok = name and name.lower() in LABEL_NAMES and name.isidentifier() and name not in cloud.fields
    return name if ok else "label"


def label_source(cloud: PointCloud) -> str | None:
    """The name of the column the cloud's labels came from (LAS: `classification`); None when
    it has none, or its labels were made in code."""
    if cloud.labels is None:
        return None
    return cloud.label_field or ("classification" if cloud.label_scheme == "asprs" else None)


def labels_field(cloud: PointCloud, field: str | None) -> np.ndarray | None:
    """The labels a stage scores or trains on: the cloud's named labels, or the field `field`
    (one whole number per point); None when the cloud has no labels and none is named.
    `field` names the labels only by the name the file gave them (`label_source`; `label`
    for labels made in code): `label` never means a column named `classification`."""
    where = cloud.source or "the input"
    source = label_source(cloud)
    if field is None:
        return cloud.labels
    plain = {"label", "labels"}  # one name, singular or plural (an npz's `labels`)
    names = plain if source is None or source.lower() in plain else {source.lower()}
    if cloud.labels is not None and field.lower() in names:
        return cloud.labels
    if field not in cloud.fields:
        named = [source or "label"] if cloud.labels is not None else []
        have = ", ".join(named + sorted(cloud.fields)) or "none"
        raise InputError(f"{where}: no field {field!r} to take labels from (it has: {have})")
    values = np.asarray(cloud.fields[field])
    if values.ndim != 1:
        raise InputError(f"{where}: field {field!r} has {int(np.prod(values.shape[1:]))} values "
                         "per point; labels need one")
    return as_labels(values, where, field)
