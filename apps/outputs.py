"""Output-path rules shared by the stages: a preview is a `.png`, and no output may replace a
file the command reads or another output it writes (a path typo must not eat the input)."""
from __future__ import annotations

from pathlib import Path


def check_output(path: Path, suffix: str, option: str, *others: Path | None) -> None:
    """`path` ends in `suffix`, is none of `others` (inputs and other outputs), is writable."""
    from pointgcn.errors import InputError
    from pointgcn.io import check_writable

    if path.suffix.lower() != suffix:
        raise InputError(f"{option} must name a {suffix} file, got {path}")
    for other in others:
        if other is not None and Path(path).resolve() == Path(other).resolve():
            raise InputError(f"{option} {path} is also {other}; it would be overwritten")
    check_writable(path)
