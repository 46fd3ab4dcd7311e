"""NumPy clouds: .npy (an (N, C) table by the column rule, or a structured array with named
fields) and .npz (named arrays).

npz keys (case-insensitive): points | pos | xyz | coords → positions (an (N, C) table there is
split by the column rule); colors | color | rgb → colours; normals | normal → normals;
labels | label | seg | class | classes → labels; every other array whose first axis is N →
`fields` under its key. Per-file values (a 0-d array or a single value, e.g. a class id
`label=5`) are not per-point: they are ignored and named in the report's format text, as are
other keys of another length; a named key (labels, colours, normals) with several rows but not
N is a broken file and refused.
The content decides, not the extension: an .npz that holds a single array is read as .npy and
an .npy that holds an archive as .npz. Files are loaded with `allow_pickle=False`: an object
array is refused, never executed.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from ..errors import FormatError
from .cloud import PointCloud
from .columns import as_labels, cloud_from_named, cloud_from_table, normalize_colors

NPZ_KEYS = {
    "points": ("points", "pos", "xyz", "coords"),
    "colors": ("colors", "color", "rgb"),
    "normals": ("normals", "normal"),
    "labels": ("labels", "label", "seg", "class", "classes"),
}


def _load(path: Path, where: str):
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as e:
        message = str(e).splitlines()[0] if str(e) else "unreadable"
        raise FormatError(f"{where}: not a readable numpy file ({message})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise FormatError(f"{where}: not a readable numpy file ({e})") from None


def _from_array(array: np.ndarray, where: str, source: str) -> PointCloud:
    if array.dtype.names:
        rows = array.reshape(-1)  # one record per point; a sub-array field keeps its values
        return cloud_from_named({n: rows[n] for n in array.dtype.names}, where, source)
    if array.dtype.kind not in "uif":
        raise FormatError(f"{where}: array of {array.dtype} is not numeric")
    return cloud_from_table(array, where, source)


def read_numpy(path: Path, where: str) -> tuple[PointCloud, str]:
    """Read an .npy or .npz file by what it holds (see the module doc)."""
    loaded = _load(path, where)
    if isinstance(loaded, np.ndarray):
        return _from_array(loaded, where, str(path)), f"npy {loaded.shape}"
    if not isinstance(loaded, np.lib.npyio.NpzFile):  # np.load returns nothing else today
        raise FormatError(f"{where}: not a numpy array or archive")
    with loaded as archive:
        try:
            return _read_archive(archive, path, where)
        except FormatError:
            raise
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:  # members load lazily
            message = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise FormatError(f"{where}: not a readable numpy archive ({message})") from None


def _pick(archive, names: tuple[str, ...]) -> str | None:
    lower = {k.lower(): k for k in archive.files}
    return next((lower[n] for n in names if n in lower), None)


def _per_file(values: np.ndarray, n: int) -> bool:
    """A 0-d array or a single value in a cloud of several points: a per-file value."""
    return values.ndim == 0 or (values.size == 1 and n != 1)


def _read_archive(archive, path: Path, where: str) -> tuple[PointCloud, str]:
    key = _pick(archive, NPZ_KEYS["points"])
    if key is None:
        if len(archive.files) == 1:
            return _from_array(archive[archive.files[0]], where, str(path)), "npz single array"
        raise FormatError(f"{where}: no point array; expected one of the keys "
                          f"{', '.join(NPZ_KEYS['points'])} (has: {', '.join(archive.files)})")
    cloud = _from_array(archive[key], where, str(path))
    n = len(cloud)
    used, ignored = {key}, []
    for attr in ("colors", "normals", "labels"):
        k = _pick(archive, NPZ_KEYS[attr])
        if k is None:
            continue
        values = archive[k]
        used.add(k)
        if _per_file(values, n):
            ignored.append(k)
            continue
        if len(values) != n:
            raise FormatError(f"{where}: {k!r} has {len(values)} rows, {key!r} has {n}")
        want = (n,) if attr == "labels" else (n, 3)
        if values.size != int(np.prod(want)) or values.dtype.kind not in "uifb":
            raise FormatError(f"{where}: {k!r} has shape {values.shape}, expected "
                              f"{want} numbers")
        values = values.reshape(want)
        if attr == "colors":
            cloud.colors = normalize_colors(values, where)
        elif attr == "normals":
            cloud.normals = values.astype(np.float32)
        else:
            cloud.labels, cloud.label_field = as_labels(values, where, k), k
    for k in archive.files:
        if k in used:
            continue
        values = archive[k]
        if values.ndim >= 1 and len(values) == n and values.dtype.kind in "uifb":
            cloud.fields[k] = (values.astype(np.int64) if values.dtype.kind in "uib"
                               else values.astype(np.float32))
        else:
            ignored.append(k)
    text = f"npz keys {', '.join(archive.files)}"
    if ignored:
        text += f" (not per-point, ignored: {', '.join(ignored)})"
    return cloud, text
