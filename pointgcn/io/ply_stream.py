"""A binary PLY written a chunk of rows at a time (io/stream_writers.py, engine/streaming.py).

Each chunk is laid out by `write_ply`'s own column list (write.py `ply_columns`), so a streamed
file is byte for byte the file `write_ply` writes for the whole cloud. The header (from the
first chunk's columns and the promised row count) goes first; every later chunk must have the
same columns. The caller writes into `atomic_path`'s temp file, so a killed run leaves no
partial output; `close` checks that exactly the promised rows came.
"""
from __future__ import annotations

from pathlib import Path

from .cloud import PointCloud
from .write import ply_columns, ply_header, ply_rows


class PlyRowWriter:
    """Rows of clouds (chunks of one cloud, in order) appended to one binary PLY of `n` rows."""

    def __init__(self, path: str | Path, n: int):
        self.n, self.written, self.where = int(n), 0, str(path)
        self.layout: list[tuple[str, str]] | None = None
        self.file = open(path, "wb")

    def write(self, cloud: PointCloud) -> None:
        columns = ply_columns(cloud, self.where)
        layout = [(name, kind) for name, kind, _ in columns]
        if self.layout is None:
            self.layout = layout
            self.file.write(ply_header(columns, self.n))
        elif layout != self.layout:
            raise RuntimeError(f"{self.where}: columns {layout} after {self.layout}")
        self.file.write(ply_rows(columns))
        self.written += len(cloud)

    def close(self) -> None:
        self.file.close()
        if self.written != self.n:
            raise RuntimeError(f"{self.where}: wrote {self.written} of {self.n} points")
