"""Write-then-rename so a failed or interrupted run never leaves a partial output file (or a
partial output folder: `atomic_folder`), and never replaces a file the run reads.

Temp names carry this host and process (`.NAME.pgcn-HOST-PID-RAND.tmpSUFFIX`, folders
`.NAME.partial-pgcn-HOST-PID-RAND`): a run killed mid-write (SIGKILL, power loss) cannot clean
up, so the next write to the same place removes leftovers whose process is gone — only ours
(the `pgcn-` pattern), only from this host (another host's live writer on a shared disk has a
PID we cannot check), never a live process's.
Folders that a write creates for its output are removed again if the write fails, so a failed
`segment --out new/dir/o.ply` leaves no empty `new/dir`.
Inputs a run declares with `protect` (apps/cli.py protects every input named on the command
line) are never replaced: the last line of defence behind the CLI's own output checks.
"""
from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import socket
import stat
import zlib
from pathlib import Path
from typing import Iterator

from ..errors import InputError

_HOST = f"{zlib.crc32(socket.gethostname().encode()) & 0xffffffff:08x}"
_OURS = re.compile(r"pgcn-(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-[0-9a-f]{8}(?:\.tmp|$)")
_PROTECTED: set[str] = set()


def tag() -> str:
    """A unique temp-name part that `clean_stale` recognises as ours (host, pid, random)."""
    return f"pgcn-{_HOST}-{os.getpid()}-{secrets.token_hex(4)}"


def real(path: str | Path) -> str:
    """The path with links resolved; unlike `Path.resolve` (< 3.13) never raises on a loop."""
    return os.path.realpath(os.fspath(path))


def protect(*paths: str | Path | None) -> None:
    """Declare files this process reads: `atomic_path` refuses to replace them."""
    _PROTECTED.update(real(p) for p in paths if p is not None)


def unprotect_all() -> None:
    """Forget every protected path (between CLI runs inside one process, e.g. tests)."""
    _PROTECTED.clear()


def is_protected(path: str | Path) -> bool:
    return real(path) in _PROTECTED


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, someone else's
        return True
    return True


def clean_stale(folder: Path, prefix: str) -> list[Path]:
    """Remove our leftovers in `folder` whose names start with `prefix` and whose writer (a
    process on this host) is gone. Returns what was removed."""
    removed = []
    try:
        entries = [p for p in folder.iterdir() if p.name.startswith(prefix)]
    except OSError:
        return removed
    for entry in entries:
        m = _OURS.match(entry.name[len(prefix):])
        if not m or m.group("host") != _HOST or _alive(int(m.group("pid"))):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def make_parents(folder: Path, where: str) -> list[Path]:
    """mkdir -p `folder`; return the folders it created (outermost first)."""
    missing = []
    probe = folder
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"cannot write {where}: {e.strerror}") from None
    return missing[::-1]


def remove_empty(created: list[Path]) -> None:
    """Remove the folders `make_parents` created, innermost first, where still empty."""
    for folder in reversed(created):
        with contextlib.suppress(OSError):
            folder.rmdir()


def _keep_mode(path: Path, tmp: Path) -> None:
    """A file being replaced keeps its permission bits (a group-readable output stays so);
    a new one gets the umask's, as `open` would give it."""
    try:
        old = os.stat(path)
    except FileNotFoundError:
        return
    if stat.S_ISREG(old.st_mode):
        os.chmod(tmp, stat.S_IMODE(old.st_mode))


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path next to `path`; on success fsync and rename it onto `path`.

    The temp name keeps the suffix so writers that dispatch on extension still work; a file
    replaced keeps its permission mode. A path the
    run protects (an input) is refused before any work; an OS error names `path`, not the temp.
    """
    path = Path(path)
    where = str(path)
    if is_protected(path):
        raise InputError(f"{where} is an input of this run; refusing to replace it")
    created = make_parents(path.parent, where)
    clean_stale(path.parent, f".{path.stem}.")
    tmp = path.parent / f".{path.stem}.{tag()}.tmp{path.suffix}"
    ok = False
    try:
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # umask applies
            os.close(fd)
        except OSError as e:
            raise InputError(f"cannot write {where}: {e.strerror}") from None
        yield tmp
        try:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            _keep_mode(path, tmp)
            os.replace(tmp, path)
        except OSError as e:
            raise InputError(f"cannot write {where}: {e.strerror}") from None
        ok = True
    finally:
        tmp.unlink(missing_ok=True)
        if not ok:
            remove_empty(created)


@contextlib.contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """Yield an empty staging folder next to `path`; on success rename it to `path`.

    All or nothing: until the one rename, `path` is untouched, and a failure or Ctrl-C removes
    the staging folder. `path` must be missing or an empty folder (rename replaces only an empty
    one; merging into a folder of other files could not be undone), checked before any work.
    """
    where = str(path)
    target = Path(real(path))  # a symlinked `out` gets its target replaced, not the link
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise InputError(f"{where}: exists and is not an empty folder; choose a new output "
                         "folder (it is written whole or not at all)")
    if is_protected(target):
        raise InputError(f"{where} is an input of this run; refusing to replace it")
    created = make_parents(target.parent, where)
    clean_stale(target.parent, f".{target.name}.partial-")
    stage = target.parent / f".{target.name}.partial-{tag()}"
    ok = False
    try:
        try:
            stage.mkdir()
        except OSError as e:
            raise InputError(f"cannot write {where}: {e.strerror}") from None
        yield stage
        try:
            os.rename(stage, target)
        except OSError as e:
            raise InputError(f"{where}: cannot move the finished folder into place "
                             f"({e.strerror}; did something write to it meanwhile?)") from None
        ok = True
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        if not ok:
            remove_empty(created)


def check_writable(path: str | Path) -> Path:
    """Fail early (before long work) when `path` cannot be written. Creates nothing: the folders
    an output needs are made when it is written (`atomic_path`), so a failed run leaves none."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"cannot write {path}: it is a folder")
    probe = path.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise InputError(f"cannot write {path}: {probe} is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise InputError(f"cannot write {path}: {probe} is not writable")
    return path
