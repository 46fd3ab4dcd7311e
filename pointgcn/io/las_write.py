"""LAS/LAZ output (laspy; .laz compressed with lazrs), so GIS and LiDAR tools open what we write.

Two ways, one function (`write_las`):
- `template=` the LAS/LAZ file the cloud was read from: its header is kept — version, point
  format, scales, offsets, VLRs (the CRS), extra-byte dimensions — and so is every dimension
  the cloud did not change, byte for byte: raw X Y Z (after checking the cloud's coordinates
  still are the template's, to float32 rounding), intensity, returns, flags, GPS time, RGB,
  extra bytes. A dimension whose values the cloud changed (colours, a field of the same name)
  is written from the cloud. `classification=FIELD` stores that field (e.g. `pred`) in the
  `classification` dimension; fields the template lacks (`confidence`, …) become extra bytes.
- no template: LAS 1.4, point format 7 when the cloud has colours (16-bit RGB), else 6
  (8-bit classification, GPS time); a field named as one of the format's dimensions goes into
  it when its values fit, every other field, labels and normals become extra bytes. The
  scale is the coarsest power of ten that keeps the coordinates as stored: whole decimals
  when they have them (`1.234` → 0.001), else the float32 resolution of the points; the
  offset is the whole-unit minimum. `write_las` returns one note per such choice.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import FormatError, InputError
from .atomic import atomic_path
from .cloud import PointCloud
from .columns import label_column

VERSION, FORMAT_RGB, FORMAT_PLAIN = "1.4", 7, 6
RGB = ("red", "green", "blue")
MAX_DECIMALS = 9


def write_las(path: str | Path, cloud: PointCloud, *, template: str | Path | None = None,
              classification: str | None = None) -> list[str]:
    """Write `cloud` as .las/.laz (module doc); returns notes on what was chosen."""
    import laspy  # imported here: only LAS output pays for it

    where = str(path)
    if classification is not None and classification not in cloud.fields:
        raise InputError(f"{where}: no field {classification!r} to write as classification")
    if template is not None:
        las, notes = _from_template(laspy, cloud, Path(template), where, classification)
    else:
        las, notes = _new(laspy, cloud, where, classification)
    compress = Path(path).suffix.lower() == ".laz"
    with atomic_path(path) as tmp:
        try:
            las.write(str(tmp), do_compress=compress)
        except Exception as e:  # laspy raises its own and plain errors (a missing LAZ backend)
            message = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise InputError(f"cannot write {where}: {message}") from None
    return notes


def template_format(template: str | Path):
    """The point format of a LAS/LAZ template, from its header alone."""
    import laspy

    try:
        with laspy.open(str(template)) as f:
            return f.header.point_format
    except Exception as e:
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise FormatError(f"{template}: unreadable LAS file ({message})") from None


def classification_limit(template: str | Path | None = None) -> tuple[int, bool]:
    """(largest class id LAS `classification` can hold, whether there is RGB) in what
    `write_las` writes: the template's point format (0–5: 5 bits), else ours (8 bits, RGB
    when the cloud has colours — reported True). Reads only the template's header."""
    if template is None:
        return 255, True
    point_format = template_format(template)
    dim = point_format.dimension_by_name("classification")
    return int(dim_range(dim)[1]), "red" in set(point_format.dimension_names)


def dims_refusing(template: str | Path, values: dict[str, tuple[float, float, bool]]
                  ) -> list[tuple[str, tuple[float, float]]]:
    """The template's own dimensions among `values` (name → (least, most, fractional)) that
    cannot hold them, with their ranges: said before the work, not when writing."""
    point_format = template_format(template)
    names = set(point_format.dimension_names)
    out = []
    for name, (lo, hi, fractional) in values.items():
        span = dim_range(point_format.dimension_by_name(name)) if name in names else None
        if span is not None and (fractional or lo < span[0] or hi > span[1]):
            out.append((name, span))
    return out


def dim_range(dim) -> tuple[float, float] | None:
    """The values a LAS dimension holds (None: any float)."""
    if dim.dtype is None:  # a bit field
        return 0, 2 ** dim.num_bits - 1
    if dim.dtype.kind in "iu":
        info = np.iinfo(dim.dtype)
        return info.min, info.max
    return None


def _fits(values: np.ndarray, dim) -> bool:
    span = dim_range(dim)
    if span is None or not values.size:
        return True
    if values.dtype.kind == "f" and not np.all(values == np.round(values)):
        return False
    return span[0] <= values.min() and values.max() <= span[1]


def put_dim(las, name: str, values: np.ndarray, where: str) -> None:
    """Store `values` in the standard dimension `name` of `las` (a LasData or a point record),
    refusing values it cannot hold."""
    dim = las.point_format.dimension_by_name(name)
    if not _fits(values, dim):
        span = dim_range(dim)
        raise InputError(f"{where}: {name!r} values {values.min()}…{values.max()} do not fit "
                         f"the LAS dimension ({span[0]}–{span[1]})")
    las[name] = values


def extra_params(name: str, values: np.ndarray, where: str):
    """The extra-bytes dimension `values` become (integers in int32's range as int32, bools as
    uint8, 2–3 values per point as one multi-value dimension) and the values to store."""
    import laspy

    if len(name.encode()) > 32:
        raise InputError(f"{where}: field name {name!r} is longer than LAS's 32 bytes")
    values = np.asarray(values)
    if values.dtype.kind == "b":
        values = values.astype(np.uint8)
    elif values.dtype.kind in "iu" and values.size and \
            np.iinfo(np.int32).min <= values.min() and values.max() <= np.iinfo(np.int32).max:
        values = values.astype(np.int32)
    kind = values.dtype.str.lstrip("<>|=")
    if values.ndim == 2 and 1 < values.shape[1] <= 3:
        kind = f"{values.shape[1]}{kind}"
    elif values.ndim != 1:
        raise InputError(f"{where}: field {name!r} has shape {values.shape}; LAS extra bytes "
                         "hold 1 to 3 values per point")
    return laspy.ExtraBytesParams(name=name, type=kind), values


def add_extra(header, params, where: str) -> None:
    """Add an extra-bytes dimension to `header` (laspy's refusal as one line)."""
    try:
        header.add_extra_dims([params])
    except Exception as e:  # laspy's own errors: a name it takes for another dimension
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InputError(f"{where}: field {params.name!r} cannot be a LAS extra-bytes "
                         f"dimension ({message})") from None


def _rgb_scale(raw: np.ndarray) -> float:
    """As io/las.py reads them: colours whose maximum is ≤ 255 are 8-bit values in 16 bits."""
    return 255.0 if raw.size and raw.max() <= 255 else 65535.0


def _from_template(laspy, cloud: PointCloud, template: Path, where: str,
                   classification: str | None):
    try:
        las = laspy.read(str(template))
    except Exception as e:
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise FormatError(f"{template}: unreadable LAS file ({message})") from None
    if len(las.points) != len(cloud):
        raise InputError(f"{where}: the cloud has {len(cloud)} points, {template} "
                         f"{len(las.points)}: cannot keep its dimensions")
    xyz = np.stack([np.asarray(las.x), np.asarray(las.y), np.asarray(las.z)], axis=1)
    # float32 local points round by ≤ 2⁻²⁴ of their magnitude; the file's own step is its scale
    top = max(1.0, float(np.abs(cloud.points).max()))
    tol = float(np.max(las.header.scales)) + 2.0 ** -22 * top
    if np.abs(cloud.absolute_points() - xyz).max() > tol:
        raise InputError(f"{where}: the cloud's coordinates are not those of {template}")
    names = list(las.point_format.dimension_names)
    if cloud.colors is not None and set(RGB) <= set(names):
        raw = np.stack([np.asarray(las[c]) for c in RGB], axis=1)
        scale = _rgb_scale(raw)
        if not np.array_equal((raw.astype(np.float32) / scale).astype(np.float32), cloud.colors):
            rgb = np.clip(np.round(cloud.colors.astype(np.float64) * scale), 0, scale)
            for i, c in enumerate(RGB):
                las[c] = rgb[:, i].astype(np.uint16)
    if classification is not None:
        put_dim(las, "classification", cloud.fields[classification], where)
    elif cloud.labels is not None and cloud.label_scheme == "asprs" and \
            not np.array_equal(cloud.labels, np.asarray(las.classification)):
        put_dim(las, "classification", cloud.labels, where)
    for name, values in cloud.fields.items():
        if name == classification:
            continue
        if name in names:
            unchanged = np.array_equal(values, np.asarray(las[name]))
            if name not in ("X", "Y", "Z", *RGB) and not unchanged:
                put_dim(las, name, values, where)
        else:
            params, values = extra_params(name, values, where)
            try:
                las.add_extra_dim(params)
            except Exception as e:  # laspy's own errors: a name it takes for another one
                message = str(e).splitlines()[0] if str(e) else type(e).__name__
                raise InputError(f"{where}: field {name!r} cannot be a LAS extra-bytes "
                                 f"dimension ({message})") from None
            las[name] = values
    return las, []


def coordinate_scale(points: np.ndarray) -> tuple[float, int | None]:
    """The coarsest power-of-ten step that keeps float32 `points` as stored (module doc), and
    the number of decimals the coordinates have (None: the step is float32's resolution)."""
    local = np.asarray(points, np.float64)
    top = float(np.abs(local).max()) if local.size else 0.0
    resolution = float(np.spacing(np.float32(max(top, 1e-30)))) / 2  # float32 rounding
    for decimals in range(MAX_DECIMALS + 1):
        step = 10.0 ** -decimals
        if step < resolution:
            break
        off = np.abs(local / step - np.round(local / step)).max() * step if local.size else 0.0
        if off <= resolution:
            return step, decimals
    step = 10.0 ** np.floor(np.log10(max(resolution, 10.0 ** -MAX_DECIMALS)))
    return float(step), None


def new_layout(laspy, cloud: PointCloud, where: str, classification: str | None):
    """What `write_las` without a template writes for `cloud` (module doc): (header, placement:
    LAS dimension → where its values come from — ("field", name), ("labels",) or
    ("normal", i) —, notes). Every choice that looks at values (scale, offset, which field fits
    which dimension, integer widths) looks only at minima, maxima and a non-integral value
    per column, so a few extreme rows decide as the whole cloud does (io/stream_writers.py)."""
    point_format = FORMAT_RGB if cloud.colors is not None else FORMAT_PLAIN
    header = laspy.LasHeader(point_format=point_format, version=VERSION)
    absolute = cloud.absolute_points()
    scale, decimals = coordinate_scale(cloud.points)
    why = (f"the coordinates have {decimals} decimals" if decimals is not None
           else "the float32 resolution of the coordinates")
    offset = np.floor(absolute.min(axis=0)) if len(cloud) else np.zeros(3)
    span = float((absolute.max(axis=0) - offset).max()) if len(cloud) else 0.0
    while span / scale >= 2 ** 31 - 1:  # LAS stores X Y Z as int32 steps from the offset
        scale, why = scale * 10, "coarser than the coordinates: LAS's 32-bit range"
    header.scales, header.offsets = np.full(3, scale), offset
    notes = [f"LAS {VERSION} point format {point_format}, scale {scale:g} ({why})"]
    dims = header.point_format
    standard = {n.lower() for n in dims.dimension_names}
    free = {n.lower(): n for n in dims.dimension_names  # dims a field may fill
            if n not in ("X", "Y", "Z", *RGB)}
    placement: dict[str, tuple] = {}
    extras: dict[str, tuple] = {}
    if classification is not None:
        placement["classification"] = ("field", classification)
        free.pop("classification")
    if cloud.labels is not None:
        if cloud.label_scheme == "asprs" and "classification" in free:
            free.pop("classification")
            placement["classification"] = ("labels",)
        else:
            extras[label_column(cloud)] = ("labels",)
    if cloud.normals is not None:
        extras.update({n: ("normal", i) for i, n in enumerate(("nx", "ny", "nz"))})
    for name, values in cloud.fields.items():
        if name == classification:
            continue
        dim = free.get(name.lower())  # case as the source wrote it: `Intensity` is intensity
        if dim and values.ndim == 1 and _fits(values, dims.dimension_by_name(dim)):
            placement[dim] = ("field", name)
            free.pop(name.lower())
            continue
        extra = name
        if name.lower() in standard:  # taken, or values the dimension cannot hold
            notes.append(f"field {name!r} is not LAS's own {name.lower()}: written as extra "
                         f"bytes {name + '_field'!r}")
            extra = name + "_field"
        extras[extra] = ("field", name)
    for name, source in extras.items():
        params, _ = extra_params(name, _source(cloud, source), where)
        add_extra(header, params, where)
        placement[name] = source
    return header, placement, notes


def _source(cloud: PointCloud, source: tuple) -> np.ndarray:
    if source[0] == "field":
        return cloud.fields[source[1]]
    if source[0] == "labels":
        return cloud.labels
    return cloud.normals[:, source[1]]


def new_points(laspy, header, placement: dict, cloud: PointCloud, where: str):
    """`cloud`'s rows as points of `new_layout`'s header and placement."""
    rec = laspy.ScaleAwarePointRecord.zeros(len(cloud), header=header)
    absolute = cloud.absolute_points()
    rec.x, rec.y, rec.z = absolute[:, 0], absolute[:, 1], absolute[:, 2]
    if cloud.colors is not None:
        rgb = np.clip(np.round(cloud.colors.astype(np.float64) * 65535), 0, 65535)
        for i, c in enumerate(RGB):
            rec[c] = rgb[:, i].astype(np.uint16)
    extra = set(header.point_format.extra_dimension_names)
    for dim, source in placement.items():
        values = _source(cloud, source)
        if dim in extra:
            rec[dim] = extra_params(dim, values, where)[1]
        else:
            put_dim(rec, dim, values, where)
    return rec


def _new(laspy, cloud: PointCloud, where: str, classification: str | None):
    header, placement, notes = new_layout(laspy, cloud, where, classification)
    return laspy.LasData(header, new_points(laspy, header, placement, cloud, where)), notes
