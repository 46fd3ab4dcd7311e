"""Which command-line arguments a stage reads and which it writes, and the one check between them.

Stages declare file arguments with `Input()` / `Output(".png")` / `OutputFolder()` as argparse
types. Before a stage runs, apps/cli.py calls `check_paths`, which walks the chosen parser's
arguments (so no stage can skip it) and refuses, with one line and before any work, an output
that is an input or another output (links and hard links included), of the wrong suffix, a
folder, unwritable, or an existing file of another kind (`pointgcn.io.kinds`). An output's
`companions` (`Output(".pt", companions={".md": "the model card"})`: files the stage writes
beside it) are checked the same way. The shipped weights (every model's checkpoint and card,
and the manifest) are inputs of every stage: any stage may load one, by name, as a task's
default or within a budget, and none may write them. Every existing input is also
`protect`ed, so even an output derived at run time cannot replace it (`atomic_path` refuses);
a stage checks such an output against the same paths with `check_derived`.
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
    """A file the stage writes; `suffixes` its kinds; `append` for files it grows;
    `companions` the files written beside it ({suffix replacing its own: what it is})."""

    def __init__(self, *suffixes: str, append: bool = False, companions: dict | None = None):
        self.suffixes = tuple(s.lower() for s in suffixes)
        self.append = append
        self.companions = dict(companions or {})

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
    for other in others:  # a path, or (path, what it is)
        other, what = other if isinstance(other, tuple) else (other, None)
        if other is not None and _same(path, Path(other)):
            raise InputError(f"{option} {path} is {what or f'also {other}'}; it would be "
                             "overwritten")
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


def shipped_files() -> list[tuple[Path, str]]:
    """(path, what it is) of every shipped file: each model's checkpoint and card, and the
    manifest (a broken manifest still protects itself)."""
    from pointgcn.errors import InputError
    from pointgcn.models.weights import MANIFEST, read_manifest, weights_dir

    folder = weights_dir()
    files = [(folder / MANIFEST, "the shipped weights' manifest")]
    try:
        entries = read_manifest(folder)
    except InputError:
        entries = []
    for m in entries:
        for key, what in (("file", "checkpoint"), ("card", "model card")):
            if isinstance(m, dict) and m.get(key):
                files.append((folder / str(m[key]), f"shipped model {m.get('name')}'s {what}"))
    return files


def check_paths(parser: argparse.ArgumentParser, args) -> None:
    """Check every declared output of the chosen stage against every input (module doc)."""
    from pointgcn.errors import InputError
    from pointgcn.io.atomic import protect

    actions = chosen_actions(parser, args)
    inputs = [Path(v) for action in actions if isinstance(action.type, Input)
              for v in _values(action, args)]
    outputs = []  # (option, path, suffixes, append, folder)
    for action in actions:
        kind = action.type
        if isinstance(kind, (Output, OutputFolder)):
            for v in _values(action, args):
                folder = isinstance(kind, OutputFolder)
                outputs.append((_option(action), Path(v), () if folder else kind.suffixes,
                                not folder and kind.append, folder))
                for suffix, what in ({} if folder else kind.companions).items():
                    outputs.append((what, Path(v).with_suffix(suffix),
                                    ("." + suffix.rsplit(".", 1)[-1].lower(),), False, False))
    writes = any(isinstance(a.type, (Output, OutputFolder)) for a in actions)
    shipped = shipped_files() if writes else []  # (stages that write nothing need no torch)
    protect(*(p for p in inputs if p.is_file()), *(p for p, _ in shipped if p.is_file()))
    args._checked_paths = inputs + shipped + [p for _, p, *_ in outputs]
    for i, (option, path, suffixes, append, folder) in enumerate(outputs):
        others = inputs + shipped + [p for j, (_, p, *_) in enumerate(outputs) if j != i]
        if not folder:
            check_output(path, option, suffixes, others, append)
            continue
        for other in others:  # a run folder read and written again (--resume) is fine
            other, what = other if isinstance(other, tuple) else (other, None)
            if _same(path, other) and not other.is_dir():
                raise InputError(f"{option} {path} is {what or f'also {other}'}; it would be "
                                 "overwritten")
        if path.exists() and not path.is_dir():
            raise InputError(f"{option} {path} exists and is not a folder")


def check_derived(args, path: Path, what: str, suffixes: tuple[str, ...] = (),
                  extra=()) -> None:
    """An output a stage derives at run time (`OUT.json` beside a default `OUT.pt`): checked
    like a declared one against everything `check_paths` saw, and `extra` paths."""
    check_output(path, what, suffixes, [*getattr(args, "_checked_paths", ()), *extra])


def expand_inputs(items, suffixes) -> list[Path]:
    """Files from paths, folders (every file below with one of `suffixes`, sorted; hidden
    files and folders — names starting with '.' — skipped) and quoted globs (`**` recursive;
    matches without one of `suffixes` skipped, said in a note on stderr), in the order given,
    each once. A name matching nothing is an error."""
    import glob
    import sys

    from pointgcn.errors import InputError

    files: list[Path] = []
    seen: set[Path] = set()
    for item in map(Path, items):
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if p.suffix.lower() in suffixes
                           and p.is_file() and not _hidden(p.relative_to(item)))
            if not found:
                raise InputError(f"{item}: no readable files ({' '.join(suffixes)}) below it")
        elif not os.path.lexists(item) and glob.has_magic(str(item)):
            matches = sorted(Path(p) for p in glob.glob(str(item), recursive=True)
                             if Path(p).is_file())
            if not matches:
                raise InputError(f"{item}: no file matches")
            found = [p for p in matches if p.suffix.lower() in suffixes]
            if not found:
                raise InputError(f"{item}: no readable files ({' '.join(suffixes)}) among its "
                                 f"{len(matches)} matches")
            if len(found) < len(matches):
                print(f"note: {item}: skipped {len(matches) - len(found)} of {len(matches)} "
                      "matching files (not a readable kind)", file=sys.stderr)
        else:
            found = [item]  # read_points says what is wrong with it, if anything
        for p in found:
            if p not in seen:
                seen.add(p)
                files.append(p)
    return files


def _hidden(relative: Path) -> bool:
    """Whether a path below a folder is hidden or inside a hidden folder."""
    return any(part.startswith(".") for part in relative.parts)
