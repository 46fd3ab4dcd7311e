"""Small shared readers for the published data-set layouts: list files and HDF5 arrays, each
turning a missing or malformed file into a one-line `FormatError` that names it."""
from __future__ import annotations

import contextlib
from pathlib import Path

import h5py
import numpy as np

from ..errors import FormatError
from ..io.atomic import atomic_path


def read_list_file(path: str | Path) -> list[str]:
    """Non-empty stripped lines of a text list (train_files.txt, room_filelist.txt, …)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise FormatError(f"{path}: cannot read ({e.strerror})") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def resolve_listed(folder: Path, entry: str) -> Path:
    """A file named in a list file: the published lists carry paths relative to the authors'
    checkout (`data/modelnet40_ply_hdf5_2048/ply_data_train0.h5`), so fall back to the base
    name inside the list's own folder."""
    direct = folder / entry
    if direct.is_file():
        return direct
    by_name = folder / Path(entry).name
    if by_name.is_file():
        return by_name
    raise FormatError(f"{folder}: listed file {entry} is missing")


@contextlib.contextmanager
def open_h5(path: str | Path):
    """`h5py.File(path, "r")` whose failures are one-line FormatErrors naming the file: a file
    that is not HDF5 (OSError) or a missing dataset (KeyError) inside the `with` body."""
    path = Path(path)
    try:
        f = h5py.File(path, "r")
        has = ", ".join(f.keys()) or "nothing"
    except OSError as e:
        raise FormatError(f"{path}: not a readable HDF5 file ({_first_line(e)})") from None
    try:
        with f:
            yield f
    except KeyError as e:
        raise FormatError(f"{path}: missing HDF5 dataset ({_first_line(e)}; has {has})") from None
    except OSError as e:
        raise FormatError(f"{path}: unreadable HDF5 data ({_first_line(e)})") from None


def _first_line(e: BaseException) -> str:
    text = str(e.args[0]) if len(e.args) == 1 else str(e)
    return text.splitlines()[0] if text else type(e).__name__


def read_h5(path: str | Path, keys: dict[str, int], optional: dict[str, int] | None = None
            ) -> dict[str, np.ndarray]:
    """Read datasets `key → expected ndim` from an HDF5 file (optional ones only if present);
    the leading dimension must agree across keys."""
    path = Path(path)
    out: dict[str, np.ndarray] = {}
    with open_h5(path) as f:
        for key, ndim in {**keys, **(optional or {})}.items():
            if key not in f:
                if key in keys:
                    raise FormatError(f"{path}: no '{key}' dataset (has {', '.join(f)})")
                continue
            arr = f[key][...]
            if arr.ndim != ndim:
                raise FormatError(f"{path}: '{key}' has shape {arr.shape}, "
                                  f"expected {ndim} dimensions")
            if arr.dtype.kind not in "fiu":
                raise FormatError(f"{path}: '{key}' holds {arr.dtype} values, not numbers")
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                raise FormatError(f"{path}: '{key}' holds NaN or infinite values")
            out[key] = arr
    lengths = {k: len(v) for k, v in out.items()}
    if len(set(lengths.values())) > 1:
        raise FormatError(f"{path}: datasets disagree in length {lengths}")
    return out


def integer_ids(arr: np.ndarray, path: str | Path, key: str) -> np.ndarray:
    """`arr` unchanged if it holds whole numbers (integer dtype, or floats like 3.0 as some
    converters write labels); fractional ids are a broken file, not something to truncate."""
    if arr.dtype.kind == "f" and np.any(arr != np.round(arr)):
        raise FormatError(f"{path}: '{key}' holds fractional values, not integer ids")
    return arr


def write_h5(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """Write datasets atomically (gzip-compressed like the published files)."""
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            for key, arr in arrays.items():
                f.create_dataset(key, data=arr, compression="gzip", compression_opts=4)


def write_text(path: str | Path, lines: list[str]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def write_npy(path: str | Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array)


def write_npz(path: str | Path, **arrays: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

