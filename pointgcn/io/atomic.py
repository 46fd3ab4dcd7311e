"""Write-then-rename so a failed or interrupted run never leaves a partial output file (or a
partial output folder: `atomic_folder`)."""
from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path next to `path`; on success fsync and rename it onto `path`.

    The temp name keeps the suffix so writers that dispatch on extension still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}",
                               dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file normal permissions
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """Yield an empty staging folder next to `path`; on success rename it to `path`.

    All or nothing: until the one rename, `path` is untouched, and a failure or Ctrl-C removes
    the staging folder. `path` must be missing or an empty folder (rename replaces only an empty
    one; merging into a folder of other files could not be undone), checked before any work.
    """
    from ..errors import InputError

    where = str(path)
    target = Path(path).resolve()  # a symlinked `out` gets its target replaced, not the link
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise InputError(f"{where}: exists and is not an empty folder; choose a new output "
                         "folder (it is written whole or not at all)")
    target.parent.mkdir(parents=True, exist_ok=True)
    stage = target.parent / f".{target.name}.partial-{os.getpid()}-{secrets.token_hex(4)}"
    stage.mkdir()
    try:
        yield stage
        try:
            os.rename(stage, target)
        except OSError as e:
            raise InputError(f"{where}: cannot move the finished folder into place "
                             f"({e.strerror}; did something write to it meanwhile?)") from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def check_writable(path: str | Path) -> Path:
    """Fail early (before long work) when `path` cannot be written; creates missing folders."""
    from ..errors import InputError

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"cannot write {path}: {e.strerror}") from None
    if path.is_dir():
        raise InputError(f"cannot write {path}: it is a folder")
    if not os.access(path.parent, os.W_OK):
        raise InputError(f"cannot write {path}: {path.parent} is not writable")
    return path
