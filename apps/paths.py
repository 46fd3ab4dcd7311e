"""Which command-line arguments a stage reads and which it writes, and the one check between them.

Stages declare file arguments with `Input()` / `Output(".png")` / `OutputFolder()` as argparse
types. Before a stage runs, apps/cli.py calls `check_paths`, which walks the chosen parser's
arguments (so no stage can skip it) and refuses, with one line and before any work, an output
that is an input or another output (links and hard links included), of the wrong suffix, a
folder, unwritable, or an existing file of another kind (`pointgcn.io.kinds`). Every existing
input is also `protect`ed, so even an output derived at run time (`OUT.json` beside `OUT.pt`)
cannot replace it: `atomic_path` refuses.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path


class Input:
    """A file or folder the stage reads (or, with `str`, a path or a shipped model name)."""

    def __init__(self, convert=Path):
        self.convert = convert

    def __call__(self, text: str):
        return self.convert(text)


class Output:
    """A file the stage writes; `suffixes` its kinds; `append` for files it grows."""

    def __init__(self, *suffixes: str, append: bool = False):
        self.suffixes = tuple(s.lower() for s in suffixes)
        self.append = append

    def __call__(self, text: str) -> Path:
        return Path(text)


class OutputFolder:
    """A folder the stage creates (its own rules say whether it may exist)."""

    def __call__(self, text: str) -> Path:
        return Path(text)


def chosen_actions(parser: argparse.ArgumentParser, args) -> list[argparse.Action]:
    """The parser's actions, descending into the sub-command that `args` chose."""
    actions = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            chosen = getattr(args, action.dest, None)
            if chosen in action.choices:
                actions += chosen_actions(action.choices[chosen], args)
        else:
            actions.append(action)
    return actions


def _values(action, args) -> list:
    value = getattr(args, action.dest, None)
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _option(action) -> str:
    return action.option_strings[0] if action.option_strings else action.dest.upper()


def _same(a: Path, b: Path) -> bool:
    from pointgcn.io.atomic import real

    if real(a) == real(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_output(path: Path, option: str, suffixes: tuple[str, ...] = (), others=(),
                 append: bool = False) -> None:
    """One output file: its suffix, not any of `others` (inputs, other outputs), writable, and
    no file of another kind in its place. Stages call it for outputs they derive themselves."""
    from pointgcn.errors import InputError
    from pointgcn.io import check_writable
    from pointgcn.io.kinds import same_kind

    path = Path(path)
    suffix = path.suffix.lower()
    if suffixes and suffix not in suffixes:
        raise InputError(f"{option} must name a {' or '.join(suffixes)} file, got {path}")
    for other in others:
        if other is not None and _same(path, Path(other)):
            raise InputError(f"{option} {path} is also {other}; it would be overwritten")
    if os.path.lexists(path) and not os.path.exists(path):
        raise InputError(f"{option} {path} is a broken or looping link")
    check_writable(path)
    if path.exists():
        if not path.is_file():
            raise InputError(f"{option} {path} exists and is not a regular file")
        try:
            ok = same_kind(path, suffix)
        except OSError as e:
            raise InputError(f"{option} {path}: cannot read ({e.strerror})") from None
        if not ok:
            verb = "append to" if append else "replace"
            raise InputError(f"{option} {path} exists and is not a {suffix or 'known'} file of "
                             f"ours; refusing to {verb} it (choose another path)")


def check_paths(parser: argparse.ArgumentParser, args) -> None:
    """Check every declared output of the chosen stage against every input (module doc)."""
    from pointgcn.errors import InputError
    from pointgcn.io.atomic import protect

    actions = chosen_actions(parser, args)
    inputs = [(action, Path(v)) for action in actions if isinstance(action.type, Input)
              for v in _values(action, args)]
    outputs = [(action, Path(v)) for action in actions
               if isinstance(action.type, (Output, OutputFolder)) for v in _values(action, args)]
    protect(*(p for _, p in inputs if p.is_file()))
    for i, (action, path) in enumerate(outputs):
        others = [p for _, p in inputs] + [p for j, (_, p) in enumerate(outputs) if j != i]
        if isinstance(action.type, Output):
            check_output(path, _option(action), action.type.suffixes, others, action.type.append)
            continue
        for other in others:  # a run folder read and written again (--resume) is fine
            if _same(path, other) and not other.is_dir():
                raise InputError(f"{_option(action)} {path} is also {other}; it would be "
                                 "overwritten")
        if path.exists() and not path.is_dir():
            raise InputError(f"{_option(action)} {path} exists and is not a folder")


def expand_inputs(items, suffixes) -> list[Path]:
    """Files from paths, folders (every file below with one of `suffixes`, sorted) and quoted
    globs (`**` recursive), in the order given, each once. A name matching nothing is an error."""
    import glob

    from pointgcn.errors import InputError

    files: list[Path] = []
    seen: set[Path] = set()
    for item in map(Path, items):
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if p.suffix.lower() in suffixes
                           and p.is_file() and not p.name.startswith("."))
            if not found:
                raise InputError(f"{item}: no readable files ({' '.join(suffixes)}) below it")
        elif not os.path.lexists(item) and glob.has_magic(str(item)):
            found = sorted(Path(p) for p in glob.glob(str(item), recursive=True)
                           if Path(p).is_file())
            if not found:
                raise InputError(f"{item}: no file matches")
        else:
            found = [item]  # read_points says what is wrong with it, if anything
        for p in found:
            if p not in seen:
                seen.add(p)
                files.append(p)
    return files
