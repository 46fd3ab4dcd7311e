"""The latency data file: one JSON row per line, read and checked here, grown by `collect`.

Row (one JSON object per line, appended with one O_APPEND write so parallel collectors and an
interrupted run never leave a half row of ours in the middle of the file):

    {"encoding": [90 × 0/1], "ops": [9 op names], "config": {points, width, cells, k,
     in_channels, n_classes, task, batch, stem_multiplier, fusion_channels, prediction},
     "device": {cpu, machine, cores, torch, …, id}, "runtime": "torch" | "onnxruntime",
     "threads": 1, "sampling": "uniform" | "stratified" | "given", "latency_ms": median,
     "stats": {"min", "p25", "p75", "wall_median", "clock": "cpu" | "wall", "rounds",
     "warmup"}, "reference_ms": median of the group's reference, "timestamp": "2024-…+00:00"}

A final line without its newline is a whole row when it parses (someone else's editor), and
otherwise an append that did not finish: readers skip it, and `prepare_append` cuts it — but
only once every other line was read as a row and the cut line begins the way our rows do.
Anything else at `--out` (a checkpoint, another JSON, any other text) is refused unchanged.
"""
from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

import numpy as np

from ..errors import FormatError, InputError, Setting
from .genotype import N_EDGES
from .ops import PRIMITIVES

log = logging.getLogger(__name__)

# The measured network: cells of `width` channels on `points` points, and the head around them
# (as configs/nas_sgas_modelnet40.yaml). Every key is stored with each row; a row that leaves
# one out was measured at its default.
CONFIG_DEFAULTS = dict(points=1024, width=32, cells=2, k=9, in_channels=3, n_classes=40,
                       task="classification", batch=1, stem_multiplier=3, fusion_channels=1024,
                       prediction=[512, 256])
# How every row `append_row` writes begins (json.dumps keeps the row's key order).
ROW_START = '{"encoding":'


def read_rows(path: str | Path) -> list[dict]:
    """Rows of a latency file, checked; an unfinished final append is skipped."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"latency file not found: {path}")
    rows, _ = scan(path.read_bytes(), path)
    if not rows:
        raise InputError(f"{path}: no latency rows")
    return rows


def scan(data: bytes, path: Path) -> tuple[list[dict], int]:
    """(rows, length of an unfinished final append in bytes) of a file's contents; a
    FormatError naming file:line for anything that is not a row of ours."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise FormatError(f"{path}: not a latency jsonl (byte {e.start} is not text)") from None
    lines = text.split("\n")
    last = lines.pop()  # "" when the file ends with a newline
    rows = [parse_row(line, f"{path}:{i}") for i, line in enumerate(lines, 1) if line.strip()]
    if not last.strip():
        return rows, 0
    where = f"{path}:{len(lines) + 1}"
    try:
        row = json.loads(last)
    except json.JSONDecodeError:
        if not last.startswith(ROW_START):
            raise FormatError(f"{where}: not a JSON object, nor the start of a latency row "
                              "(a file of another kind?)") from None
        return rows, len(last.encode())
    except RecursionError:
        raise FormatError(f"{where}: nested too deeply to be a latency row") from None
    check_row(row, where)
    return rows + [row], 0


def parse_row(line: str, where: str) -> dict:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        raise FormatError(f"{where}: not a JSON object ({e.msg})") from None
    except RecursionError:
        raise FormatError(f"{where}: nested too deeply to be a latency row") from None
    check_row(row, where)
    return row


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value) and value > 0


def check_row(row, where: str) -> None:
    if not isinstance(row, dict):
        raise FormatError(f"{where}: a row must be a JSON object")
    for key in ("encoding", "config", "latency_ms", "runtime"):
        if key not in row:
            raise FormatError(f"{where}: row has no {key!r}")
    enc = row["encoding"]
    if not isinstance(enc, list) or len(enc) != N_EDGES * len(PRIMITIVES) or \
            any(v not in (0, 1) or isinstance(v, (bool, str)) for v in enc):
        raise FormatError(f"{where}: encoding must be a list of {N_EDGES * len(PRIMITIVES)} "
                          "0/1 numbers")
    per_edge = np.asarray(enc, np.float64).reshape(N_EDGES, len(PRIMITIVES)).sum(1)
    if not (per_edge == 1).all():
        raise FormatError(f"{where}: encoding must have exactly one 1 per edge (edges "
                          f"{np.flatnonzero(per_edge != 1).tolist()} do not)")
    if not _positive(row["latency_ms"]):
        raise FormatError(f"{where}: latency_ms must be a positive number, "
                          f"got {row['latency_ms']!r}")
    if row.get("reference_ms") is not None and not _positive(row["reference_ms"]):
        raise FormatError(f"{where}: reference_ms must be a positive number, "
                          f"got {row['reference_ms']!r}")
    if not isinstance(row["config"], dict):
        raise FormatError(f"{where}: config must be an object")
    for key in ("points", "width", "cells", "k"):
        v = row["config"].get(key, CONFIG_DEFAULTS[key])
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise FormatError(f"{where}: config {key} must be a positive integer, got {v!r}")


def prepare_append(path: Path, config: dict, runtime: str, device: dict) -> None:
    """Make `path` ready for rows of (config, runtime, device), or refuse and leave it as it is.

    Nothing is changed before the whole file was read as latency rows that `latreg.fit` could
    fit together with the new ones; then an unfinished final append is cut (and said), or a
    whole final row gets its missing newline."""
    if not path.exists():
        return
    data = path.read_bytes()
    try:
        rows, unfinished = scan(data, path)
    except FormatError as e:
        raise FormatError("{error}; collect only appends to latency files, so it is left "
                          "unchanged — choose another {out}", error=e,
                          out=Setting("out", "file")) from None
    for row in rows:
        old = {**CONFIG_DEFAULTS, **row["config"]}
        differ = sorted(k for k in set(old) | set(config)
                        if k not in ("cells", "width", "points", "k")
                        and old.get(k) != config.get(k))
        if row["runtime"] != runtime:
            differ.append("runtime")
        if (row.get("device") or {}).get("id") != device["id"]:
            differ.append("device id (machine, runtime, threads or pointgcn version)")
        if differ:
            raise InputError(f"{path}: its rows differ from these in {', '.join(differ)}; "
                             "one regressor fits one head, device and runtime — use another file")
    if data.endswith(b"\n") or not data.strip():
        return
    with open(path, "r+b") as f:
        if os.fstat(f.fileno()).st_size != len(data):
            raise InputError(f"{path}: changed while it was checked (another collector?); "
                             "run again")
        if unfinished:
            f.truncate(len(data) - unfinished)
            log.warning(f"{path}: dropped an unfinished last line ({unfinished} bytes)")
        else:
            f.seek(0, os.SEEK_END)
            f.write(b"\n")


def append_row(path: str | Path, row: dict) -> None:
    """Append one JSON line with a single O_APPEND write (never a half line from us)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(row, separators=(",", ":")) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
