"""The output of `segment --stream` (engine/streaming.py), written a chunk of rows at a time in
input order: the file in-memory `segment` writes for the same input and predictions.

`StreamOutput` settles before the work what in-memory segment settles on the whole cloud, so
writing cannot fail after hours of inference and every chunk gets the same layout:
- the output's fields: the input's (`ChunkReader.cloud`: as `read_points` reads them), made
  writable by `output_fields` (a LAS input written as LAS keeps them as they are), then
  `pred`, `confidence`, `entropy` — the same names, types and order as in memory;
- choices that look at values over the whole cloud — the decimals of the coordinates (.txt, a
  new LAS's scale), a new LAS's offset and which field fits which LAS dimension, integers
  beyond 32 bits — look only at per-column minima, maxima and one non-integral value. One pass
  (`extreme_rows`) keeps the rows holding them, and the choices are made on those rows, so
  they are the whole cloud's (skipped when the output and the input's column types leave no
  such choice). The first chunk and those rows are written to nowhere first: a field name or
  value a format cannot hold is refused before the work.
Writers: .ply (`PlyRowWriter`), .npy (the header of the whole array, then rows), .txt (rows
formatted as `write_txt` does), .las/.laz through laspy's chunked writer (a LAS input: its
header, VLRs and EVLRs, and every dimension's raw bytes copied, predictions in
`classification` or extra bytes as `write_las` does; another input: `new_layout`'s LAS 1.4).
.npz is a zip of whole arrays: refused. The caller writes into `atomic_path`'s temp file.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import InputError
from .cloud import PointCloud
from .las_write import (MAX_DECIMALS, RGB, add_extra, coordinate_scale, dim_range,
                        extra_params, new_layout, new_points, put_dim)
from .ply_stream import PlyRowWriter
from .write import npy_table, output_fields, ply_columns, txt_columns, txt_rows

STREAMED_OUT = (".ply", ".las", ".laz", ".npy", ".txt")
LAS = (".las", ".laz")
ADDED = ("pred", "confidence", "entropy")  # the fields segment adds, streamed or not
_PROBE = {"pred": np.int32, "confidence": np.float32, "entropy": np.float32}


def extreme_rows(part: PointCloud) -> np.ndarray:
    """Rows holding each coordinate's minimum and maximum, each decimal step's largest
    rounding residue (`coordinate_scale`), and each label/field column's minimum, maximum and
    first non-integral value: every value any writer's choice looks at."""
    n = len(part)
    if not n:
        return np.zeros(0, np.int64)
    rows = []
    local = part.points.astype(np.float64)
    rows += [local.argmin(axis=0), local.argmax(axis=0)]
    for decimals in range(MAX_DECIMALS + 1):
        step = 10.0 ** -decimals
        rows.append([np.abs(local / step - np.round(local / step)).max(axis=1).argmax()])
    for values in ([part.labels] if part.labels is not None else []) + list(part.fields.values()):
        flat = np.asarray(values).reshape(n, -1)
        k = flat.shape[1]
        if not k:
            continue
        rows.append([flat.argmin() // k, flat.argmax() // k])
        if flat.dtype.kind == "f":
            rows.append(np.flatnonzero(~(flat == np.round(flat)).all(axis=1))[:1])
    return np.unique(np.concatenate([np.asarray(r, np.int64).ravel() for r in rows]))


def concat(parts: list[PointCloud]) -> PointCloud:
    """Rows of several chunks of one file as one cloud."""
    first = parts[0]
    join = lambda get: None if get(first) is None else np.concatenate(  # noqa: E731
        [get(p) for p in parts])
    return PointCloud(join(lambda p: p.points), join(lambda p: p.colors),
                      join(lambda p: p.normals), join(lambda p: p.labels),
                      {k: np.concatenate([p.fields[k] for p in parts]) for k in first.fields},
                      first.source, first.offset, first.label_scheme, first.label_field)


def _wide(dtype: np.dtype) -> bool:
    """Whether integers of this raw type can fall outside int32 (then values decide)."""
    return dtype.kind in "ui" and (dtype.itemsize > 4 or (dtype.kind == "u" and
                                                          dtype.itemsize == 4))


def _raw_types(raw) -> list[np.dtype]:
    if raw is None:
        return []
    array = getattr(raw, "array", raw)  # laspy's record holds a structured array
    return [array.dtype[n].base for n in array.dtype.names] if array.dtype.names \
        else [array.dtype.base]


class StreamOutput:
    """What the stream writes for `reader`'s rows, settled before the work (module doc).
    `colors`: "input", "class" or None (the input's when it has them, as in memory);
    `classification`: the field a LAS output stores as `classification` (None: extra bytes);
    `min_confidence`: points less sure than this get pred −1."""

    def __init__(self, out: str | Path, reader, scan, *, colors: str | None = None,
                 classification: str | None = None,
                 colorize: Callable[[np.ndarray], np.ndarray] | None = None,
                 n_classes: int = 256, min_confidence: float | None = None,
                 chunk: int = 1 << 20):
        self.out, self.where = Path(out), str(out)
        self.suffix = self.out.suffix.lower()
        if self.suffix not in STREAMED_OUT:
            raise InputError(f"{self.where}: streaming writes {' '.join(STREAMED_OUT)} a chunk at "
                             f"a time; {self.suffix or 'this suffix'} is not one of them")
        if classification is not None and self.suffix not in LAS:
            raise InputError(f"{self.where}: only LAS output stores predictions as "
                             "classification")
        self.reader, self.scan, self.n = reader, scan, scan.n
        self.colors = colors or ("input" if reader.has_colors else "class")
        if self.colors == "input" and not reader.has_colors:
            raise InputError(f"{reader.where} has no colours to keep")
        if self.colors == "class" and colorize is None:
            raise InputError("class colours need a palette")
        self.colorize, self.classification = colorize, classification
        self.min_confidence = min_confidence
        self.template = reader.kind == "las" and self.suffix in LAS
        self.notes: list[str] = []
        chunks = reader.chunks(min(chunk, 1 << 16))
        first = next(chunks)
        chunks.close()
        probe = head = reader.cloud(first, scan)
        need = self.suffix == ".txt" or (self.suffix in LAS and not self.template) or \
            any(_wide(t) for t in _raw_types(first.raw))
        if need:
            parts = []
            for c in reader.chunks(chunk):
                part = reader.cloud(c, scan)
                parts.append(part.subset(extreme_rows(part)))
            probe = concat(parts)
        self.types: dict[str, np.dtype] | None = None
        if not self.template:
            fields, self.notes = output_fields(self.suffix, probe.fields)
            self.types = {k: v.dtype for k, v in fields.items()}
        self.notes += [f"the input's field {name!r} is replaced by this run's" for name in ADDED
                       if name in probe.fields]
        sample = self._rows(probe, {k: np.zeros(len(probe), t) for k, t in _PROBE.items()})
        self.decimals = coordinate_scale(sample.points)[1] if self.suffix == ".txt" else None
        self.las = None
        if self.suffix in LAS:
            self.las = self._las_layout(sample, n_classes)
        if self.template:  # the first chunk's rows, as they will be written
            self._las_points(first, self._rows(head, {k: np.zeros(len(head), t)
                                                      for k, t in _PROBE.items()}))
        else:
            self._dry_run(sample)

    # ------------------------------------------------------------------ rows
    def rows(self, part: PointCloud, result: np.ndarray) -> PointCloud:
        """A chunk's output rows: the input's rows `part` plus the tile results (TILE_RESULT);
        with `min_confidence`, less sure points get pred −1 (as in memory)."""
        added = {k: result[k] for k in ADDED}
        if self.min_confidence is not None:
            added["pred"] = np.where(result["confidence"] < self.min_confidence, -1,
                                     result["pred"]).astype(result["pred"].dtype)
        return self._rows(part, added)

    def _rows(self, part: PointCloud, added: dict[str, np.ndarray]) -> PointCloud:
        fields = part.fields
        if self.types is not None:
            fields, _ = output_fields(self.suffix, fields)
            if list(fields) != list(self.types):
                raise RuntimeError(f"fields {list(fields)} != the planned {list(self.types)}")
            fields = {k: v.astype(self.types[k], copy=False) for k, v in fields.items()}
        out = PointCloud(part.points, part.colors, part.normals, part.labels,
                         {**fields, **added}, part.source, part.offset, part.label_scheme,
                         part.label_field)
        if self.colors == "class":
            out.colors = np.asarray(self.colorize(added["pred"]), np.float32)
        return out

    # ------------------------------------------------------------------ LAS
    def _las_layout(self, sample: PointCloud, n_classes: int):
        import laspy

        if not self.template:
            header, placement, notes = new_layout(laspy, sample, self.where, self.classification)
            self.notes += notes
            return header, placement
        with laspy.open(str(self.reader.path)) as f:
            header = copy.deepcopy(f.header)
        names = set(header.point_format.dimension_names)
        if self.classification is not None:
            top = dim_range(header.point_format.dimension_by_name("classification"))[1]
            if n_classes - 1 > top:
                raise InputError(f"the model has {n_classes} classes; LAS classification of "
                                 f"{self.reader.where}'s point format holds 0–{top}")
        for name in ADDED:
            if name != self.classification and name not in names:
                add_extra(header, extra_params(name, sample.fields[name], self.where)[0],
                          self.where)
        rgb = 255.0 if self.scan.rgb_max <= 255 else 65535.0  # las_write._rgb_scale's rule
        return header, rgb

    def _las_points(self, chunk, rows: PointCloud):
        import laspy

        if not self.template:
            header, placement = self.las
            return new_points(laspy, header, placement, rows, self.where)
        header, scale = self.las
        out = laspy.ScaleAwarePointRecord.zeros(len(rows), header=header)
        raw = chunk.raw.array
        for name in raw.dtype.names:  # every dimension's bytes as the input has them
            out.array[name] = raw[name]
        names = set(header.point_format.dimension_names)
        if self.colors == "class" and set(RGB) <= names:
            rgb = np.clip(np.round(rows.colors.astype(np.float64) * scale), 0, scale)
            for i, c in enumerate(RGB):
                out[c] = rgb[:, i].astype(np.uint16)
        if self.classification is not None:
            put_dim(out, "classification", rows.fields[self.classification], self.where)
        extra = set(header.point_format.extra_dimension_names)
        for name in ADDED:
            if name == self.classification:
                continue
            values = rows.fields[name]
            if name in extra and name not in raw.dtype.names:
                out[name] = extra_params(name, values, self.where)[1]
            else:
                put_dim(out, name, values, self.where)
        return out

    # ------------------------------------------------------------------ writing
    def _dry_run(self, sample: PointCloud) -> None:
        """Lay out the planned rows without writing: a value or name the format cannot hold
        is refused before the work."""
        if self.suffix == ".ply":
            ply_columns(sample, self.where)
        elif self.suffix == ".npy":
            npy_table(sample, self.where)
        elif self.suffix == ".txt":
            txt_columns(sample, self.where, self.decimals)
        else:
            self._las_points(None, sample)

    def open(self, path: Path) -> "_Writer":
        return _Writer(self, path)


class _Writer:
    """One pass of rows into `path`, in order; `close` checks that all `n` came."""

    def __init__(self, plan: StreamOutput, path: Path):
        self.plan, self.path, self.written = plan, Path(path), 0
        suffix = plan.suffix
        if suffix == ".ply":
            self.file = PlyRowWriter(self.path, plan.n)
        elif suffix in LAS:
            import laspy
            self.file = laspy.open(str(self.path), mode="w", header=plan.las[0],
                                   do_compress=suffix == ".laz")
        else:
            self.file = open(self.path, "wb" if suffix == ".npy" else "w",
                             **({} if suffix == ".npy" else {"encoding": "ascii"}))
        self.first = True

    def write(self, chunk, rows: PointCloud) -> None:
        plan, suffix = self.plan, self.plan.suffix
        if suffix == ".ply":
            self.file.write(rows)
        elif suffix in LAS:
            self.file.write_points(plan._las_points(chunk, rows))
        elif suffix == ".npy":
            table = npy_table(rows, plan.where)
            if self.first:
                _npy_header(self.file, table.dtype, plan.n)
                self.dtype = table.dtype
            elif table.dtype != self.dtype:
                raise RuntimeError(f"{plan.where}: columns changed between chunks")
            self.file.write(table)
        else:
            columns = txt_columns(rows, plan.where, plan.decimals)
            if self.first:
                self.file.write(" ".join(n for n, _, _ in columns) + "\n")
            txt_rows(self.file, columns)
        self.first = False
        self.written += len(rows)

    def close(self) -> None:
        plan = self.plan
        if plan.suffix in LAS and plan.template:
            evlrs = plan.las[0].evlrs
            if plan.las[0].version.minor >= 4 and evlrs:
                self.file.write_evlrs(evlrs)
        self.file.close()
        if self.written != plan.n:
            raise RuntimeError(f"{plan.where}: wrote {self.written} of {plan.n} points")

    def abort(self) -> None:
        try:
            self.file.close()
        except Exception:  # the temp file is removed by atomic_path; nothing to keep
            pass


def _npy_header(f, dtype: np.dtype, n: int) -> None:
    """`np.save`'s header for a 1-d array of `n` rows of `dtype` (format 1.0 when it fits)."""
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
              "shape": (n,)}
    try:
        np.lib.format.write_array_header_1_0(f, header)
    except ValueError:
        np.lib.format.write_array_header_2_0(f, header)
