"""A binary PLY written a chunk of rows at a time (engine/streaming.py's output).

The header and row layout are `write_ply`'s (write.py: x y z float, or double with an offset;
red green blue uchar; the label column; then int fields), so a streamed file reads back like
one written whole. The caller writes into `atomic_path`'s temp file, so a killed run leaves no
partial output; `close` checks that exactly the promised rows came.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from .write import _color_bytes


class PlyRowWriter:
    """Rows of x y z [red green blue] [label], int32 fields, then float32 fields, appended
    chunk by chunk."""

    def __init__(self, path: Path, n: int, double: bool, colors: bool, label: str | None,
                 fields: tuple[str, ...], floats: tuple[str, ...] = ()):
        kind, code = ("double", "<f8") if double else ("float", "<f4")
        cols = [(a, kind, code) for a in "xyz"]
        cols += [(c, "uchar", "u1") for c in ("red", "green", "blue")] if colors else []
        cols += [(label, "int", "<i4")] if label else []
        cols += [(f, "int", "<i4") for f in fields]
        cols += [(f, "float", "<f4") for f in floats]
        self.ints = set(fields) | ({label} if label else set())
        self.dtype = np.dtype([(name, code) for name, _, code in cols])
        self.n, self.written, self.where, self.label = int(n), 0, str(path), label
        header = ["ply", "format binary_little_endian 1.0", "comment written by pointgcn",
                  f"element vertex {self.n}"]
        header += [f"property {kind} {name}" for name, kind, _ in cols] + ["end_header"]
        self.file = open(path, "wb")
        self.file.write(("\n".join(header) + "\n").encode("ascii"))

    def write(self, xyz: np.ndarray, colors: np.ndarray | None = None,
              label: np.ndarray | None = None, **fields: np.ndarray) -> None:
        """One chunk: xyz (m, 3), colours in [0, 1], label and each field (m,)."""
        table = np.empty(len(xyz), self.dtype)
        for i, a in enumerate("xyz"):
            table[a] = xyz[:, i]
        if colors is not None:
            rgb = _color_bytes(colors)
            for i, c in enumerate(("red", "green", "blue")):
                table[c] = rgb[:, i]
        for name, values in ([(self.label, label)] if label is not None else []) + \
                list(fields.items()):
            if name in self.ints and values.size and (values.min() < -2**31
                                                      or values.max() >= 2**31):
                raise InputError(f"{self.where}: {name!r} values do not fit in a 32-bit PLY int")
            table[name] = values
        self.file.write(table.tobytes())
        self.written += len(table)

    def close(self) -> None:
        self.file.close()
        if self.written != self.n:
            raise InputError(f"{self.where}: wrote {self.written} of {self.n} points")
