"""S3DIS semantic segmentation in any of its three published shapes, as 1 m blocks.

  raw   `Stanford3dDataset_v1.2_Aligned_Version/Area_N/<room>/Annotations/*.txt` (s3dis_raw.py)
  npy   PointNet's `stanford_indoor3d/Area_N_<room>.npy`: N×7 `x y z r g b label` per room
        (what `pointgcn data prepare s3dis` writes; xyz shifted to a zero min corner)
  h5    PointNet's `indoor3d_sem_seg_hdf5_data`: `ply_data_all_K.h5` with `data` (B, 4096, 9)
        float32 and `label` (B, 4096) uint8, listed by `all_files.txt`, and `room_filelist.txt`
        naming the room of every block (`Area_1_conferenceRoom_1`)

Splits follow PointNet/PyG: the test set is every block of rooms in `Area_<test_area>`, the
train set all others. Area 5 is the standard protocol; 6-fold cross-validation runs
test_area = 1 … 6. Rooms from raw/npy are cut into blocks once, at construction, with
PointNet's rule (blocks.py) and a generator seeded by (seed, room name), so the blocks of a room
do not depend on the split or the order of reading. Raw rooms are checked by s3dis_raw.py; what
it repaired or dropped is counted in `S3DIS.report` / prepare's `report` (one DataReport).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from ..errors import ConfigError, FormatError, InputError, Setting
from ..io.atomic import atomic_folder
from ..io.cloud import PointCloud
from ..seeds import item_rng
from ..tasks import DEFAULT_POINTS
from .blocks import apply_position_norm, check_position_norm
from .classes import S3DIS_CLASSES
from .formats import (integer_ids, read_h5, read_list_file, resolve_listed, write_h5,
                      write_npy, write_text)
from .report import DataReport
from .rooms import room_to_blocks
from .s3dis_raw import find_raw_root, list_raw_rooms, read_raw_room

H5_DIR_NAME = "indoor3d_sem_seg_hdf5_data"
NPY_DIR_NAME = "stanford_indoor3d"
H5_BLOCKS_PER_FILE = 1000  # PointNet's H5_BATCH_SIZE
_ROOM_RE = re.compile(r"^Area_(\d+)_(.+)$")


@dataclass
class S3DISSource:
    kind: str  # "raw" | "npy" | "h5"
    path: Path


def find_s3dis(root: str | Path, whole_rooms: bool = False) -> S3DISSource:
    """Which S3DIS layout `root` (or its standard child folder) holds; h5 blocks first
    (training), or with `whole_rooms` only npy rooms or the raw tree (full-resolution eval;
    `data prepare s3dis --blocks` writes both into one folder)."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: no such folder")
    h5 = [c for c in (root, root / H5_DIR_NAME)
          if (c / "all_files.txt").is_file() and (c / "room_filelist.txt").is_file()]
    if h5 and not whole_rooms:
        return S3DISSource("h5", h5[0])
    for cand in (root, root / NPY_DIR_NAME):
        if cand.is_dir() and any(_ROOM_RE.match(p.stem) for p in cand.glob("Area_*.npy")):
            return S3DISSource("npy", cand)
    raw = find_raw_root(root)
    if raw is not None:
        return S3DISSource("raw", raw)
    if h5:
        raise InputError("{h5}: the h5 blocks hold no whole rooms; full resolution needs the raw "
                         "tree or per-room npy files (or {rooms_off}: per block only)", h5=h5[0],
                         rooms_off=Setting("full_resolution", "full_resolution=False"))
    raise FormatError(f"{root}: not an S3DIS folder (expected Area_N/<room>/Annotations, "
                      f"Area_N_<room>.npy files, or all_files.txt + room_filelist.txt)")


def room_area(name: str) -> int:
    """Area number of a PointNet room name `Area_<n>_<room>`."""
    m = _ROOM_RE.match(name)
    if not m:
        raise FormatError(f"room name {name!r} is not Area_<n>_<room>")
    return int(m.group(1))


def read_room_npy(path: str | Path) -> np.ndarray:
    """An N×7 `x y z r g b label` room array (PointNet's stanford_indoor3d file)."""
    path = Path(path)
    try:
        rows = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise FormatError(f"{path}: not a readable .npy file ({e})") from None
    if rows.ndim != 2 or rows.shape[1] != 7 or len(rows) == 0:
        raise FormatError(f"{path}: expected an N×7 array (x y z r g b label), got {rows.shape}")
    if not np.isfinite(rows).all():
        raise FormatError(f"{path}: holds NaN or Inf values")
    return rows


def npy_rooms(folder: Path) -> list[tuple[str, Path]]:
    return sorted((p.stem, p) for p in folder.glob("Area_*.npy") if _ROOM_RE.match(p.stem))


def iter_rooms(root: str | Path, areas=None, progress: bool = False,
               report: DataReport | None = None) -> Iterator[tuple[str, np.ndarray]]:
    """(room name, N×7 rows) of every room of a raw or npy source, optionally of some areas.
    Rows of raw rooms are shifted to a zero min corner, as the npy files are; what reading
    them repaired or dropped goes into `report`."""
    src = find_s3dis(root, whole_rooms=True)
    wanted = None if areas is None else {int(a) for a in areas}
    if src.kind == "npy":
        items = [(name, p) for name, p in npy_rooms(src.path)
                 if wanted is None or room_area(name) in wanted]
    else:
        items = [(f"Area_{a}_{p.name}", (a, p)) for a, p in list_raw_rooms(src.path)
                 if wanted is None or a in wanted]
    for name, ref in _progress(items, progress, "rooms"):
        if src.kind == "npy":
            yield name, read_room_npy(ref)
        else:
            yield name, read_raw_room(ref[1], area=ref[0], report=report).as_rows(shift=True)


def room_blocks(name: str, rows: np.ndarray, seed: int,
                n_points: int = DEFAULT_POINTS["segmentation"], block: float = 1.0,
                stride: float = 0.5, min_points: int = 100):
    """PointNet's blocks (data, labels) of one room's N×7 rows, drawn from a generator seeded by
    (seed, room name); a room the planner refuses is named in the error."""
    try:
        return room_to_blocks(rows[:, :3], rows[:, 3:6], rows[:, 6], item_rng(seed, name),
                              n_points, block, stride, min_points)
    except InputError as e:
        raise type(e)(f"{name}: {e}") from None


def room_cloud(name: str, rows: np.ndarray) -> PointCloud:
    """A room's rows as a `PointCloud` (colours scaled to [0, 1])."""
    return PointCloud(rows[:, :3].astype(np.float32), (rows[:, 3:6] / 255.0).astype(np.float32),
                      labels=rows[:, 6].astype(np.int64), source=name)


def _progress(items, enabled: bool, unit: str):
    if not enabled:
        return items
    return tqdm(items, unit=unit[:-1] if unit.endswith("s") else unit, desc=unit)


def read_block_h5(folder: str | Path, areas=None):
    """PointNet's h5 blocks of the wanted areas: (data (B, P, 9) float32, labels (B, P) uint8
    as stored, room names (B,))."""
    folder = Path(folder)
    rooms = read_list_file(folder / "room_filelist.txt")
    wanted = None if areas is None else {int(a) for a in areas}
    datas, labels, names, offset = [], [], [], 0
    for entry in read_list_file(folder / "all_files.txt"):
        path = resolve_listed(folder, entry)
        arrays = read_h5(path, {"data": 3, "label": 2})
        data, label = arrays["data"], integer_ids(arrays["label"], path, "label")
        if data.shape[2] != 9 or label.shape != data.shape[:2]:
            raise FormatError(f"{path}: expected data (B, P, 9) and label (B, P), got "
                              f"{data.shape} and {label.shape}")
        if label.size and (label.min() < 0 or label.max() > 255):
            raise FormatError(f"{path}: labels outside 0–255")
        block_rooms = rooms[offset:offset + len(data)]
        if len(block_rooms) < len(data):
            raise FormatError(f"{folder / 'room_filelist.txt'}: fewer lines than h5 blocks")
        offset += len(data)
        keep = np.array([wanted is None or room_area(r) in wanted for r in block_rooms], bool)
        datas.append(data[keep].astype(np.float32))
        labels.append(label[keep].astype(np.uint8))
        names += [r for r, k in zip(block_rooms, keep) if k]
    if offset != len(rooms):
        raise FormatError(f"{folder / 'room_filelist.txt'}: {len(rooms)} lines for {offset} "
                          f"h5 blocks")
    if not datas:
        raise FormatError(f"{folder / 'all_files.txt'}: lists no h5 files")
    return np.concatenate(datas), np.concatenate(labels), names


def write_block_h5(folder: str | Path, blocks: Iterator[tuple[str, np.ndarray, np.ndarray]],
                   blocks_per_file: int = H5_BLOCKS_PER_FILE) -> int:
    """Write (room name, data (B, P, 9), labels (B, P)) batches as PointNet's h5 layout:
    `ply_data_all_K.h5` of `blocks_per_file` blocks, `all_files.txt`, `room_filelist.txt`.
    Returns the number of blocks. Memory holds at most one file's blocks."""
    folder = Path(folder)
    files, rooms, buf_d, buf_l, total = [], [], [], [], 0

    def flush():
        if not buf_d:
            return
        name = f"ply_data_all_{len(files)}.h5"
        write_h5(folder / name, {"data": np.concatenate(buf_d).astype(np.float32),
                                 "label": np.concatenate(buf_l).astype(np.uint8)})
        files.append(f"{H5_DIR_NAME}/{name}")
        buf_d.clear()
        buf_l.clear()

    for room, data, labels in blocks:
        rooms += [room] * len(data)
        total += len(data)
        start = 0
        while start < len(data):
            space = blocks_per_file - sum(len(d) for d in buf_d)
            buf_d.append(data[start:start + space])
            buf_l.append(labels[start:start + space])
            start += space
            if sum(len(d) for d in buf_d) == blocks_per_file:
                flush()
    flush()
    write_text(folder / "room_filelist.txt", rooms)
    write_text(folder / "all_files.txt", files)
    return total


class S3DIS(Dataset):
    """Blocks of S3DIS as the DeepGCN model input: (features (9, n_points) float32,
    labels (n_points,) int64).

    position_norm="normalize_scale" (default) is the official DeepGCN pipeline: PyG's
    NormalizeScale on channels 0–2 of each block (pos), channels 3–8 unchanged (x);
    "none" gives PointNet's raw channels. For h5 sources, n_points below the stored 4096 draws a
    subset per item from a generator fixed by (seed, epoch, index) — call `set_epoch` to vary it.
    """

    task = "segmentation"
    classes = S3DIS_CLASSES
    class_names = list(S3DIS_CLASSES)
    num_classes = len(S3DIS_CLASSES)

    def __init__(self, root: str | Path, split: str = "train", test_area: int = 5,
                 n_points: int = DEFAULT_POINTS["segmentation"], block: float = 1.0,
                 stride: float = 0.5, min_points: int = 100,
                 position_norm: str = "normalize_scale", seed: int = 0, progress: bool = False):
        if split not in ("train", "test", "all"):
            raise ConfigError(f"split must be train, test or all, got {split!r}")
        if not 1 <= int(test_area) <= 6:
            raise ConfigError(f"test_area must be 1–6, got {test_area}")
        self.position_norm = check_position_norm(position_norm)
        self.split, self.test_area, self.n_points, self.seed = split, int(test_area), n_points, seed
        self.epoch = 0
        self.report = DataReport("rooms")
        areas = {"train": [a for a in range(1, 7) if a != self.test_area],
                 "test": [self.test_area], "all": list(range(1, 7))}[split]
        self.source = find_s3dis(root)
        if self.source.kind == "h5":
            self.data, self.labels, self.rooms = read_block_h5(self.source.path, areas)
            if n_points > self.data.shape[1]:
                raise ConfigError(f"n_points={n_points} exceeds the {self.data.shape[1]} points "
                                  f"stored per block in {self.source.path}")
        else:
            datas, labels, self.rooms = [], [], []
            for name, rows in iter_rooms(self.source.path, areas, progress, self.report):
                d, lab = room_blocks(name, rows, seed, n_points, block, stride, min_points)
                datas.append(d)
                labels.append(lab.astype(np.uint8))  # 13 classes; int64 only per item
                self.rooms += [name] * len(d)
            if not datas:
                raise InputError(f"{root}: no rooms in areas {areas}")
            self.data, self.labels = np.concatenate(datas), np.concatenate(labels)
        if len(self.data) == 0:
            raise InputError(f"{root}: no blocks for split {split} (test area {test_area})")
        if self.labels.min() < 0 or self.labels.max() >= self.num_classes:
            raise FormatError(f"{root}: labels outside 0–{self.num_classes - 1}")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int):
        data, labels = self.data[index], self.labels[index]
        if self.n_points < data.shape[0]:
            pick = item_rng(self.seed, self.epoch, int(index)).choice(
                data.shape[0], self.n_points, replace=False)
            data, labels = data[pick], labels[pick]
        feats = apply_position_norm(data, self.position_norm)
        return (torch.from_numpy(np.ascontiguousarray(feats.T)),
                torch.from_numpy(labels.astype(np.int64)))


def prepare_s3dis(src: str | Path, out: str | Path, blocks: bool = False, seed: int = 0,
                  progress: bool = True, report: DataReport | None = None) -> dict:
    """Raw tree → PointNet's per-room `Area_N_<room>.npy` (N×7 float32, shifted) in `out`;
    with `blocks`, also `out/indoor3d_sem_seg_hdf5_data` (stride 0.5 blocks of every room).
    All or nothing (`atomic_folder`): `out` must be new or empty and appears only when every
    room is written, so a failed or interrupted run can never pass for a smaller data set.
    Returns counts (rooms, points, blocks); what was repaired or dropped goes into `report`."""
    rooms = list_raw_rooms(src)
    summary = {"rooms": 0, "points": 0, "blocks": 0}
    report = DataReport("rooms") if report is None else report
    with atomic_folder(out) as stage:
        def rows_iter():
            for area, room_dir in _progress(rooms, progress, "rooms"):
                room = read_raw_room(room_dir, area=area, report=report)
                rows = room.as_rows(shift=True)
                write_npy(stage / f"{room.name}.npy", rows)
                summary["rooms"] += 1
                summary["points"] += len(rows)
                yield room.name, rows

        if blocks:
            def block_iter():
                for name, rows in rows_iter():
                    yield (name, *room_blocks(name, rows, seed))
            summary["blocks"] = write_block_h5(stage / H5_DIR_NAME, block_iter())
        else:
            for _ in rows_iter():
                pass
    return summary
