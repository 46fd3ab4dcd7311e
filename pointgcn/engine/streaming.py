"""Segment a scene larger than memory, tile by tile, with the in-memory path's result.

Four passes over the file (io/chunks.py reads it a chunk at a time):
1. scan: bounds, colour range, finiteness — the whole-file rules, the block frame, the tiles;
2. bin: every point is appended to the file of each tile that loads it (its core tile, and
   neighbours whose halo reaches it; data/tiles.py), in input order;
3. segment: per tile, `stream_tile.segment_tile` runs the in-memory blocks and votes on the
   tile's points and labels its core points; their labels go to the tile's result file, then
   `progress.json` records the tile as done (both written by rename);
4. write: the input is read again in order and each point takes the next label of its core
   tile's result file (a tile's core points were binned in input order), into the output
   through `atomic_path` — by its suffix, the file in-memory segment writes for this input
   (io/stream_writers.py: every input field kept, LAS dimensions byte for byte), planned
   right after the scan — for .txt, a new LAS, or integer columns that may pass 32 bits,
   after one more pass keeping the rows that hold each column's extremes — so a format that
   cannot hold the output is refused before the work.
The work lives in a folder beside the output (`work_folder`), removed on success. A run killed
in pass 4 leaves no output and its tile results, so `resume=True` writes again; one killed
in pass 3 continues with `resume=True` from the first unfinished tile: every tile is labelled
once into its own file, and pass 4 checks that each tile's labels are used up exactly, so no
point is labelled twice or lost. Peak memory is a chunk or a tile (≈ `tile_points` core points
plus halo), never the cloud; time is linear in the points (each pass touches each point a
fixed number of times, the halo adds a constant factor).
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from ..data.build import SampleSettings
from ..data.tiles import TileGrid, halo_for
from ..errors import InputError, Setting
from ..io.atomic import atomic_path, make_parents, remove_empty
from ..io.chunks import ChunkReader, Scan
from ..io.cloud import PointCloud
from ..io.stream_writers import StreamOutput
from .predictor import Predictor
from .stream_tile import TILE_RESULT, segment_tile, tile_record

log = logging.getLogger(__name__)
FORMAT = "pointgcn-stream 1"
CHUNK = 1 << 20
TILE_POINTS = 500_000
WRITE_CHUNK = 1 << 18  # rows per output chunk: every field of the input, converted, and the
# output's columns (≈ 400 B per row for a LAS with a dozen dimensions, written as PLY)


@dataclass
class StreamResult:
    n: int
    tiles: int
    counts: np.ndarray  # points per predicted class
    far: int = 0  # undrawn points filled from a drawn point beyond `reach` (stream_tile.py)
    resumed_at: int = 0
    confusion: np.ndarray | None = None  # (C, C) truth × pred, when `truth` was asked for
    label_max: int = -1  # the largest label in the file (another label set when ≥ C)
    unsure: int = 0  # points below `min_confidence`, written with pred −1
    notes: list[str] = field(default_factory=list)
    preview: PointCloud | None = None  # every k-th point with `pred` (and `truth`): a PNG's


class _Preview:
    """Every k-th output point (at most `limit`) with its prediction and the file's label: what
    a preview PNG of a cloud that is never in memory draws, gathered in the write pass."""

    def __init__(self, n: int, limit: int):
        self.step = -(-n // limit) if limit else 0
        self.parts: list[tuple] = []

    def add(self, start: int, part: PointCloud, pred: np.ndarray,
            labels: np.ndarray | None) -> None:
        if self.step:
            sel = slice((-start) % self.step, None, self.step)
            self.parts.append((part.points[sel], None if part.colors is None
                               else part.colors[sel], pred[sel],
                               None if labels is None else labels[sel]))

    def cloud(self) -> PointCloud | None:
        if not self.parts:
            return None
        points, colors, pred, truth = zip(*self.parts)
        fields = {"pred": np.concatenate(pred).astype(np.int32)}
        if truth[0] is not None:
            fields["truth"] = np.concatenate(truth).astype(np.int32)
        return PointCloud(np.concatenate(points),
                          None if colors[0] is None else np.concatenate(colors), fields=fields)


def work_folder(out: str | Path) -> Path:
    out = Path(out)
    return out.parent / f".{out.name}.pointgcn-stream"


def _atomic_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _tile_size(scan_n: int, extent: np.ndarray, halo: float, stride: float,
               tile_points: int) -> float:
    """A square side holding ≈ tile_points points at the cloud's mean xy density, a whole
    number of strides, never under the halo."""
    area = max(float(extent[0]) * float(extent[1]), 1e-12)
    side = math.sqrt(area * tile_points / max(scan_n, 1))
    return max(math.ceil(max(side, halo) / stride), 1) * stride


def stream_segment(reader: ChunkReader, out: str | Path, predictor: Predictor,
                   settings: SampleSettings, key: dict, *, batch: int = 8, seed: int = 0,
                   resume: bool = False, colorize: Callable[[np.ndarray], np.ndarray],
                   truth: bool = False, chunk: int = CHUNK, tile_points: int = TILE_POINTS,
                   reach: float | None = None, progress: bool = True,
                   colors: str | None = None, classification: str | None = None,
                   min_confidence: float | None = None, preview: int = 0) -> StreamResult:
    """Write `out` by its suffix (io/stream_writers.py: what in-memory segment writes — the
    input's colours, or `colors="class"`: `colorize(labels)`, every input field, `pred`,
    `confidence`, `entropy`; LAS: `classification="pred"` stores pred there; pred −1 below
    `min_confidence`); see the module doc. `key` identifies the model for `resume`. With
    `preview` > 0, `result.preview` holds every k-th point (at most `preview`) with `pred`."""
    if predictor.in_channels != 9:
        raise InputError(f"this model takes {predictor.in_channels} channels; room "
                         "segmentation needs a 9-channel (xyz, rgb, location) model")
    out = Path(out)
    work = work_folder(out)
    reach = settings.stride / 2 if reach is None else float(reach)
    bar = dict(disable=not progress, unit="pt", unit_scale=True, dynamic_ncols=True)
    scan = reader.scan(chunk)
    if scan.n_bad:
        raise InputError(f"{reader.where}: {scan.n_bad} points have NaN/Inf coordinates; "
                         "streaming cannot drop them (clean the file first)")
    if scan.n == 0:
        raise InputError(f"{reader.where}: no points")
    chunks = reader.chunks(min(chunk, 1 << 16))
    first = next(chunks)
    chunks.close()
    need = int(getattr(predictor, "min_points", 1))
    if len(np.unique(first.xyz, axis=0)) < need:
        raise InputError(f"{reader.where}: fewer than {need} distinct points among the first "
                         f"{len(first.xyz)}; this model's kNN graphs gather {need} neighbours")
    output = StreamOutput(out, reader, scan, colors=colors, classification=classification,
                          colorize=colorize, n_classes=predictor.n_classes,
                          min_confidence=min_confidence, chunk=min(chunk, WRITE_CHUNK))
    for note in output.notes:  # settled before the work, as in memory
        log.warning(note)
    offset = scan.offset
    mins = np.array([np.float32(v) for v in scan.lo - offset], np.float64)
    extent = np.array([np.float32(v) for v in scan.hi - offset], np.float64) - mins
    halo = halo_for(settings.block, settings.stride, reach)
    grid = TileGrid((float(extent[0]), float(extent[1])),
                    _tile_size(scan.n, extent, halo, settings.stride, tile_points), halo)
    manifest = {"format": FORMAT, "key": key, "n": scan.n, "seed": seed, "reach": reach,
                "settings": [settings.n_points, settings.block, settings.stride,
                             settings.position_norm], "tile": grid.size,
                "mins": mins.tolist(), "extent": extent.tolist()}
    progress_path = work / "progress.json"
    state = {"binned": False, "done": 0}
    created: list[Path] = []  # folders above the work folder this run made
    if (work / "manifest.json").exists():
        try:
            old = json.loads((work / "manifest.json").read_text())
            state = json.loads(progress_path.read_text()) if progress_path.exists() else state
        except (OSError, ValueError):
            old = None
        if not resume:
            raise InputError("{work}: an unfinished streaming run of this output; continue it "
                             "with {resume} or remove the folder", work=str(work),
                             resume=Setting("resume", "resume=True"))
        if old != manifest:
            raise InputError(f"{work}: the unfinished run had another input, model or settings; "
                             "remove the folder to start over")
    elif work.exists():
        raise InputError(f"{work}: exists and is not a streaming run's work folder; move it")
    else:
        if resume:
            log.warning("nothing to resume for this output: starting from the beginning")
        created = make_parents(work.parent, str(out))  # removed again on a refusal
        work.mkdir()
        _atomic_json(work / "manifest.json", manifest)
    frame = (mins, extent)
    try:
        if not state["binned"]:
            state = {"binned": True, "done": 0,
                     "core": _bin(reader, scan, grid, mins, work, chunk, bar)}
            _atomic_json(progress_path, state)
        result = StreamResult(scan.n, len(grid), np.zeros(predictor.n_classes, np.int64),
                              resumed_at=state["done"])
        core = state["core"]
        with tqdm(total=scan.n, initial=sum(core[:state["done"]]), desc="segment", **bar) as b:
            for t in range(state["done"], len(grid)):
                labels, far = np.zeros(0, TILE_RESULT), 0
                if core[t]:
                    rows = np.fromfile(work / f"t{t}.bin", tile_record(reader.has_colors))
                    labels, far = segment_tile(t, rows, grid, frame, predictor, settings,
                                               reach, batch, seed)
                    del rows
                    assert len(labels) == core[t]
                _atomic_save(work / f"t{t}.pred", labels)
                (work / f"t{t}.bin").unlink(missing_ok=True)
                state["done"], state["far"] = t + 1, state.get("far", 0) + far
                _atomic_json(progress_path, state)
                b.update(core[t])
        result.far = state.get("far", 0)
        result.preview = _write(reader, scan, grid, mins, work, out, core, output, truth, chunk,
                                bar, result, _Preview(scan.n, preview))
    except InputError:
        shutil.rmtree(work, ignore_errors=True)
        remove_empty(created)
        raise
    shutil.rmtree(work, ignore_errors=True)
    if result.far:
        log.warning(f"{result.far} undrawn points took the labels of a drawn point over "
                    f"{reach:g} m away within their tile; one outside it may be nearer")
    return result


def _atomic_save(path: Path, values: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp")
    values.tofile(tmp)
    os.replace(tmp, path)


def _bin(reader: ChunkReader, scan: Scan, grid: TileGrid, mins: np.ndarray, work: Path,
         chunk: int, bar: dict) -> list[int]:
    """Pass 2: append each point to the files of the tiles loading it; core points per tile."""
    for stale in work.glob("t*.*"):
        stale.unlink()
    record = tile_record(reader.has_colors)
    core = np.zeros(len(grid), np.int64)
    with tqdm(total=scan.n, desc="tiles", **bar) as b:
        for c in reader.chunks(chunk):
            points, colors = reader.converted(c, scan)
            xy = points[:, :2].astype(np.float64) - mins[:2]
            core += np.bincount(grid.core(xy), minlength=len(grid))
            for t, idx in grid.loading(xy):
                rows = np.empty(len(idx), record)
                rows["i"], rows["p"] = idx + c.start, points[idx]
                if colors is not None:
                    rows["c"] = colors[idx]
                with open(work / f"t{t}.bin", "ab") as f:
                    rows.tofile(f)
            b.update(len(points))
    return core.tolist()


def _write(reader: ChunkReader, scan: Scan, grid: TileGrid, mins: np.ndarray, work: Path,
           out: Path, core: list[int], output: StreamOutput, truth: bool, chunk: int, bar: dict,
           result: StreamResult, preview: _Preview) -> PointCloud | None:
    """Pass 4: the output, in input order, each point's label from its core tile's file;
    returns the preview's points."""
    used = np.zeros(len(grid), np.int64)
    n_classes = len(result.counts)
    if truth:
        result.confusion = np.zeros((n_classes, n_classes), np.int64)
    with atomic_path(out) as tmp:
        writer = output.open(tmp)
        try:
            with tqdm(total=scan.n, desc="write", **bar) as b:
                for c in reader.chunks(min(chunk, WRITE_CHUNK)):
                    part = reader.cloud(c, scan)
                    tiles = grid.core(part.points[:, :2].astype(np.float64) - mins[:2])
                    got_all = np.empty(len(part), TILE_RESULT)
                    for t in np.unique(tiles):
                        mine = tiles == t
                        k = int(mine.sum())
                        got = np.fromfile(work / f"t{t}.pred", TILE_RESULT, k,
                                          offset=TILE_RESULT.itemsize * int(used[t]))
                        if len(got) != k:
                            raise RuntimeError(f"tile {t}: {len(got)} labels for {k} points")
                        got_all[mine] = got
                        used[t] += k
                    writer.write(c, output.rows(part, got_all))
                    pred = got_all["pred"]
                    labels = reader.labels_of(c) if truth else None  # the scored ones
                    sure = np.ones(len(pred), bool) if output.min_confidence is None else \
                        got_all["confidence"] >= output.min_confidence
                    preview.add(c.start, part, np.where(sure, pred, -1), labels)  # as written
                    result.unsure += int(len(pred) - sure.sum())
                    result.counts += np.bincount(pred[sure], minlength=n_classes)
                    if labels is not None and len(labels):
                        result.label_max = max(result.label_max, int(labels.max()))
                    if truth and labels is not None:
                        ok = (labels >= 0) & (labels < n_classes)
                        np.add.at(result.confusion, (labels[ok], pred[ok]), 1)
                    b.update(len(part))
        except BaseException:
            writer.abort()
            raise
        writer.close()
        if used.tolist() != list(core):
            raise RuntimeError(f"labels used {used.tolist()} != core points {core}")
    return preview.cloud()
