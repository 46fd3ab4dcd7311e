"""NumPy clouds: .npy (an (N, C) table by the column rule, or a structured array with named
fields) and .npz (named arrays).

npz keys (case-insensitive): points | pos | xyz | coords → positions (an (N, C) table there is
split by the column rule); colors | color | rgb → colours; normals | normal → normals;
labels | label | seg | class | classes → labels; every other array whose first axis is N →
`fields` under its key. Arrays of another length (e.g. a per-file class id) are ignored.
Files are loaded with `allow_pickle=False`: an object array is refused, never executed.
"""
from __future__ import annotations

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
    except (OSError, EOFError) as e:
        raise FormatError(f"{where}: not a readable numpy file ({e})") from None


def _from_array(array: np.ndarray, where: str, source: str) -> PointCloud:
    if array.dtype.names:
        return cloud_from_named({n: array[n].reshape(-1) for n in array.dtype.names}, where,
                                source)
    if array.dtype.kind not in "uif":
        raise FormatError(f"{where}: array of {array.dtype} is not numeric")
    return cloud_from_table(array, where, source)


def read_npy(path: Path, where: str) -> tuple[PointCloud, str]:
    array = _load(path, where)
    if not isinstance(array, np.ndarray):
        raise FormatError(f"{where}: expected a single array (.npy), found an archive")
    return _from_array(array, where, str(path)), f"npy {array.shape}"


def _pick(archive, names: tuple[str, ...]) -> str | None:
    lower = {k.lower(): k for k in archive.files}
    return next((lower[n] for n in names if n in lower), None)


def read_npz(path: Path, where: str) -> tuple[PointCloud, str]:
    with _load(path, where) as archive:
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise FormatError(f"{where}: expected an .npz archive")
        key = _pick(archive, NPZ_KEYS["points"])
        if key is None:
            if len(archive.files) == 1:
                return _from_array(archive[archive.files[0]], where, str(path)), "npz single array"
            raise FormatError(f"{where}: no point array; expected one of the keys "
                              f"{', '.join(NPZ_KEYS['points'])} (has: {', '.join(archive.files)})")
        cloud = _from_array(archive[key], where, str(path))
        n = len(cloud)
        used = {key}
        for attr in ("colors", "normals", "labels"):
            k = _pick(archive, NPZ_KEYS[attr])
            if k is None:
                continue
            values = archive[k]
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
                cloud.labels = as_labels(values, where, k)
            used.add(k)
        for k in archive.files:
            if k in used:
                continue
            values = archive[k]
            if values.ndim >= 1 and len(values) == n and values.dtype.kind in "uifb":
                cloud.fields[k] = (values.astype(np.int64) if values.dtype.kind in "uib"
                                   else values.astype(np.float32))
    return cloud, f"npz keys {', '.join(archive.files)}"
