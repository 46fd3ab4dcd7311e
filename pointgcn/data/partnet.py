"""PartNet fine-grained semantic segmentation, in the published `sem_seg_h5` layout.

`sem_seg_h5/<Category>-<level>/{train,val,test}-NN.h5` hold `data` (B, 10000, 3) float32 and
`label_seg` (B, 10000) integer part ids (0 = "other"), plus `data_num`; the split's files are
listed by `{train,val,test}_files.txt` next to them (PartNet's `load_seg` joins each line to
that folder). One model is trained per category and level. The class count of a published
category comes from `classes.PARTNET_PARTS` (PartNet's level file lines + 1 for "other");
other categories (the procedural parts) use the largest label found in any split, plus one.
Part names: "other", then `part_<i>`, unless the task folder holds a `part_names.json` (the
procedural parts write one).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from ..errors import ConfigError, FormatError, InputError
from ..io.atomic import atomic_folder
from ..seeds import item_rng
from .classes import PARTNET_PARTS
from .formats import (integer_ids, read_h5, read_list_file, resolve_listed, write_h5,
                      write_text)
from .transforms import scale_anisotropic, translate

SPLITS = ("train", "val", "test")
DIR_NAME = "sem_seg_h5"
_TASK_RE = re.compile(r"^(.+)-(\d+)$")


def find_partnet(root: str | Path) -> Path:
    """The folder holding `<Category>-<level>/` task folders (root or root/sem_seg_h5)."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: no such folder")
    for cand in (root, root / DIR_NAME):
        if cand.is_dir() and list_tasks(cand):
            return cand
    raise FormatError(f"{root}: not a PartNet sem_seg_h5 folder (expected <Category>-<level>/"
                      f"train_files.txt)")


def list_tasks(folder: Path) -> list[tuple[str, int]]:
    """(category, level) of every task folder with at least one split list."""
    tasks = []
    for p in sorted(folder.iterdir()):
        m = _TASK_RE.match(p.name)
        if m and p.is_dir() and any((p / f"{s}_files.txt").is_file() for s in SPLITS):
            tasks.append((m.group(1), int(m.group(2))))
    return tasks


def _compact_labels(lab: np.ndarray, path: Path) -> np.ndarray:
    """Part ids in the smallest integer type that holds them (uint8 for every published task):
    Chair-train as int64 would be ~360 MB, as uint8 45 MB; items become int64 one at a time."""
    integer_ids(lab, path, "label_seg")  # read_h5 already refused non-numbers and NaN/Inf
    lo, hi = (int(lab.min()), int(lab.max())) if lab.size else (0, 0)
    for dtype in (np.uint8, np.int16, np.int32):
        if np.iinfo(dtype).min <= lo and hi <= np.iinfo(dtype).max:
            return lab.astype(dtype, copy=False)
    raise FormatError(f"{path}: 'label_seg' ids outside the 32-bit range")


def _split_files(task_dir: Path, split: str) -> list[Path]:
    listing = task_dir / f"{split}_files.txt"
    if not listing.is_file():
        raise FormatError(f"{task_dir}: no {listing.name}")
    paths = [resolve_listed(task_dir, entry) for entry in read_list_file(listing)]
    if not paths:
        raise FormatError(f"{listing}: lists no h5 files")
    return paths


def read_split(task_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(points (B, P, 3) float32, labels (B, P) uint8, or int16/int32 if ids need it) of one
    split of one task."""
    points, labels = [], []
    for path in _split_files(task_dir, split):
        arrays = read_h5(path, {"data": 3, "label_seg": 2})
        data, lab = arrays["data"], arrays["label_seg"]
        if data.shape[2] != 3 or lab.shape != data.shape[:2]:
            raise FormatError(f"{path}: expected data (B, P, 3) and label_seg (B, P), got "
                              f"{data.shape} and {lab.shape}")
        points.append(data.astype(np.float32, copy=False))
        labels.append(_compact_labels(lab, path))
    return np.concatenate(points), np.concatenate(labels)


def num_classes(task_dir: Path, category: str, level: int,
                loaded: dict[str, np.ndarray] | None = None) -> int:
    """Classes a model for the task predicts, "other" included (see module docstring).

    For categories outside PARTNET_PARTS the labels of every split are needed: splits in
    `loaded` (split → labels already in memory) are not read again, the others are read
    label_seg only (no point data)."""
    if level in PARTNET_PARTS.get(category, {}):
        return PARTNET_PARTS[category][level]
    loaded = loaded or {}
    top = -1
    for split in SPLITS:
        if split in loaded:
            labels = [loaded[split]]
        elif (task_dir / f"{split}_files.txt").is_file():
            labels = [read_h5(p, {"label_seg": 2})["label_seg"]
                      for p in _split_files(task_dir, split)]
        else:
            continue
        top = max([top] + [int(lab.max()) for lab in labels if lab.size])
    return top + 1


def part_names(task_dir: Path, n_classes: int) -> list[str]:
    """"other", part_1, …, or the names a `part_names.json` in the task folder gives."""
    names = ["other"] + [f"part_{i}" for i in range(1, n_classes)]
    named = task_dir / "part_names.json"
    if named.is_file():
        given = json.loads(named.read_text()).get("part_names", [])
        names = [given[i] if i < len(given) else names[i] for i in range(n_classes)]
    return names


class PartNetSemSeg(Dataset):
    """(points (3, n_points) float32, labels (n_points,) int64) per shape of one task.

    n_points=None keeps all stored points; fewer are drawn without replacement from a generator
    fixed by (seed, epoch, index). augment=True adds DGCNN's anisotropic scale and shift.
    """

    task = "part_segmentation"

    def __init__(self, root: str | Path, category: str, level: int, split: str = "train",
                 n_points: int | None = None, augment: bool = False, seed: int = 0):
        if split not in SPLITS:
            raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        base = find_partnet(root)
        self.task_dir = base / f"{category}-{int(level)}"
        if not self.task_dir.is_dir():
            have = ", ".join(f"{c}-{lv}" for c, lv in list_tasks(base))
            raise InputError(f"{base}: no task {category}-{level} (has {have})")
        self.category, self.level = category, int(level)
        self.points, self.labels = read_split(self.task_dir, split)  # labels compact
        self.num_classes = num_classes(self.task_dir, category, self.level,
                                       {split: self.labels})
        if self.labels.min() < 0 or self.labels.max() >= self.num_classes:
            raise FormatError(f"{self.task_dir}: {split} labels outside 0–{self.num_classes - 1}")
        self.class_names = part_names(self.task_dir, self.num_classes)
        stored = self.points.shape[1]
        if n_points is not None and not 0 < n_points <= stored:
            raise ConfigError(f"n_points must be in 1–{stored}, got {n_points}")
        self.n_points, self.augment, self.seed, self.epoch = n_points, augment, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.points)

    def __getitem__(self, index: int):
        pts, lab = self.points[index], self.labels[index]
        rng = item_rng(self.seed, self.epoch, int(index))
        if self.n_points is not None and self.n_points < len(pts):
            pick = rng.choice(len(pts), self.n_points, replace=False)
            pts, lab = pts[pick], lab[pick]
        if self.augment:
            pts = translate(scale_anisotropic(pts, rng), rng)
        return (torch.from_numpy(np.ascontiguousarray(pts.T, dtype=np.float32)),
                torch.from_numpy(lab.astype(np.int64)))


def prepare_partnet(src: str | Path, out: str | Path, categories: list[str] | None = None,
                    n_points: int | None = None, seed: int = 0, progress: bool = True) -> dict:
    """Check every task's files (keys, shapes, label range) and write a copy in the same
    layout to `out`, optionally only some categories and with n_points drawn per shape (a
    smaller CPU-sized copy). Each split is read once. All or nothing (`atomic_folder`): `out`
    must be new or empty and appears only when every task is written. Returns shapes per task
    and split."""
    base = find_partnet(src)
    tasks = [t for t in list_tasks(base) if categories is None or t[0] in categories]
    if not tasks:
        raise InputError(f"{base}: no tasks for categories {', '.join(categories or [])}")
    summary = {}
    items = tasks
    if progress:
        items = tqdm(tasks, desc="tasks", unit="task")
    with atomic_folder(out) as stage:
        for category, level in items:
            task = f"{category}-{level}"
            # published tasks have a fixed class count; for the others every label is in
            # range by definition (count = largest id + 1), so only negatives are checked
            n_cls = PARTNET_PARTS.get(category, {}).get(level)
            for split in SPLITS:
                if not (base / task / f"{split}_files.txt").is_file():
                    continue
                pts, lab = read_split(base / task, split)
                if lab.size and lab.min() < 0:
                    raise FormatError(f"{base / task}: {split} has negative labels")
                if n_cls is not None and lab.max() >= n_cls:
                    raise FormatError(f"{base / task}: {split} labels outside 0–{n_cls - 1}")
                if n_points is not None and n_points < pts.shape[1]:
                    picks = np.stack([item_rng(seed, task, split, i).choice(
                        pts.shape[1], n_points, replace=False) for i in range(len(pts))])
                    pts = np.take_along_axis(pts, picks[:, :, None], axis=1)
                    lab = np.take_along_axis(lab, picks, axis=1)
                name = f"{split}-00.h5"
                write_h5(stage / task / name,
                         {"data": pts.astype(np.float32), "label_seg": lab,
                          "data_num": np.full(len(pts), pts.shape[1], np.int32)})
                write_text(stage / task / f"{split}_files.txt", [name])
                summary[f"{task}/{split}"] = len(pts)
    return summary
