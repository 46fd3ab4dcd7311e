"""PyG's own data sets as `PointDataset`s: `data.dataset: pyg`, `data.pyg: ModelNet10 | ModelNet40 |
S3DIS | ShapeNet`, `data.root`: a folder holding PyG's `raw/` (or the raw files themselves).

Why: a PyG user's data already sits on disk in PyG's raw layout; this trains on it with
`pointgcn train` without a second copy in one of our layouts.

Nothing is downloaded and nothing is written into `data.root`: PyG processes the raw files
into our cache (`cache_dir()/pyg/<key>`, key = class, options and the raw files' names, sizes
and times), with a `raw` link to the user's folder, written whole or not at all. A missing raw
file is an InputError (PyG would download, and replace the raw folder). PyG does not read
`face` as points, so meshes (ModelNet) are sampled on their faces, once per shape (seed, shape
index), like our ModelNet loader; point sets (S3DIS, ShapeNet) draw n_points per (seed, epoch,
item), padding small clouds with repeats. Every item: xyz normalised as our own loaders do and
as `pointgcn classify` / `segment` repeat at inference — shapes to the unit sphere, segmentation
samples by `normalize_scale` (PyG's NormalizeScale, the official DeepGCN S3DIS pipeline's);
`position_norm: none` keeps raw xyz — then PyG's `x` channels; classification training adds
DGCNN's augmentation. Validation: ShapeNet's own val split; otherwise `val_fraction` of the train items
(S3DIS blocks: PyG keeps no room names, so blocks of one room may fall on both sides).
ShapeNet is trained as plain segmentation over its 50 part labels (mIoU over parts, not the
per-category shape mIoU of its papers).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..config import cache_dir
from ..errors import ConfigError, FormatError, InputError
from ..io import PointCloud
from ..io.atomic import atomic_folder
from ..io.mesh import sample_surface
from ..seeds import item_rng
from .base import EpochZeroSubset, Subset
from .build import DATASETS, DataBundle, _split_off, _tree_signature
from .classes import S3DIS_CLASSES
from .sampling import random_sample
from .transforms import (normalize_scale, normalize_unit_sphere, scale_anisotropic, shuffle,
                         translate)

# data.pyg → (torch_geometric.datasets class, task, points per item when data.n_points is null)
SETS = {"ModelNet10": ("ModelNet", "classification", 1024),
        "ModelNet40": ("ModelNet", "classification", 1024),
        "S3DIS": ("S3DIS", "segmentation", 4096),
        "ShapeNet": ("ShapeNet", "segmentation", 2048)}
ALIASES = {"ModelNet": "ModelNet10"}  # PyG's ModelNet default is name="10"


def _kwargs(name: str, d: dict, split: str) -> dict:
    """The PyG class's arguments for one split."""
    if name.startswith("ModelNet"):
        return dict(name=name[-2:], train=split == "train")
    if name == "S3DIS":
        return dict(test_area=int(d["test_area"]), train=split == "train")
    cats = d["category"]
    return dict(categories=None if cats is None else ([cats] if isinstance(cats, str) else
                                                       list(cats)),
                include_normals=bool(d["normals"]), split=split)


def _pyg_class(name: str):
    """The PyG class, with `download` refusing: PyG would fetch the data and delete raw/."""
    import torch_geometric.datasets as pyg_datasets  # heavy import: only this data set needs it

    base = getattr(pyg_datasets, SETS[name][0])

    def download(self):
        missing = [p for p in self.raw_paths if not os.path.exists(p)]
        raise InputError(f"{self.raw_dir}: PyG's {name} raw files are missing "
                         f"({', '.join(Path(p).name for p in missing[:3])}"
                         f"{' …' if len(missing) > 3 else ''}); nothing is downloaded")

    # `log` always False: PyG would print "Processing..." (the library prints nothing).
    quiet = property(lambda self: False, lambda self, value: None)
    return type(f"Offline{base.__name__}", (base,), {"download": download, "log": quiet})


def _raw_folder(root: Path) -> Path:
    """`root/raw` when it exists (PyG's own layout), else `root` itself (the raw files)."""
    if not root.is_dir():
        raise InputError(f"{root}: no such folder (data.root)")
    return root / "raw" if (root / "raw").is_dir() else root


def _process(cls, stage: Path, name: str, d: dict, raw: Path) -> None:
    """PyG's processing of every split into `stage`; what its parsers raise on a broken raw
    file becomes one FormatError line."""
    try:
        cls(str(stage), **_kwargs(name, d, "train"))
    except InputError:
        raise
    except (ValueError, IndexError, KeyError, RuntimeError, OSError) as e:
        why = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise FormatError(f"{raw}: PyG's {name} could not process these raw files ({why})"
                          ) from e


def processed_root(name: str, d: dict) -> Path:
    """Our cache folder PyG processed `data.root`'s raw files into (processing them once)."""
    raw = _raw_folder(Path(d["root"])).resolve()
    opts = {k: v for k, v in _kwargs(name, d, "train").items() if k not in ("train", "split")}
    key = hashlib.sha1(f"{name}|{sorted(opts.items())}|{raw}|{_tree_signature(raw)}"
                       .encode()).hexdigest()[:16]
    target = cache_dir() / "pyg" / f"{name}-{key}"
    if not (target / "processed").is_dir():
        cls = _pyg_class(name)
        try:
            with atomic_folder(target) as stage:
                (stage / "raw").symlink_to(raw, target_is_directory=True)
                _process(cls, stage, name, d, raw)
        except InputError:
            if not (target / "processed").is_dir():  # another process finished it: fine
                raise
    return target


class PyGPoints(Dataset):
    """Items of a PyG data set as `(features (3 + F, n_points) float32, labels)`."""

    def __init__(self, pyg, name: str, task: str, class_names: list[str], n_points: int,
                 seed: int, augment: bool, position_norm: str):
        self.pyg, self.name, self.task, self.class_names = pyg, name, task, class_names
        self.n_points, self.seed, self.augment = n_points, seed, augment
        self.position_norm, self.epoch = position_norm, 0

    def __len__(self) -> int:
        return len(self.pyg)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _points(self, data, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        """(xyz + x channels (n, C), per-point labels or None) of item `index`."""
        pos = data.pos.double().numpy()
        face = getattr(data, "face", None)
        if face is not None and face.numel():  # a mesh: fixed samples per shape
            where = f"PyG {self.name} item {index}"
            seed = int(item_rng(self.seed, "pyg", index).integers(2**31))
            cloud = sample_surface(PointCloud(pos), face.T.numpy().astype(np.int64),
                                   self.n_points, seed, where)
            return cloud.points.astype(np.float32), None
        rng = item_rng(self.seed, self.epoch, index)
        pick = random_sample(len(pos), self.n_points, rng)
        cols = [pos[pick]]
        if getattr(data, "x", None) is not None:
            cols.append(data.x.double().numpy().reshape(len(pos), -1)[pick])
        y = data.y.numpy()
        labels = y[pick] if y.size == len(pos) and self.task != "classification" else None
        return np.concatenate(cols, axis=1).astype(np.float32), labels

    def __getitem__(self, index: int):
        index = int(index)
        data = self.pyg[index]
        pts, labels = self._points(data, index)
        if self.position_norm != "none":
            unit = normalize_unit_sphere if self.task == "classification" else normalize_scale
            pts = unit(pts)
        if self.task == "classification":
            label = torch.tensor(int(data.y.view(-1)[0]))
            if self.augment:
                rng = item_rng(self.seed, self.epoch, index)
                pts = shuffle(translate(scale_anisotropic(pts, rng), rng), rng)
        else:
            label = torch.from_numpy(labels.astype(np.int64))
        return torch.from_numpy(np.ascontiguousarray(pts.T)), label


def _class_names(name: str, pyg, raw: Path) -> list[str]:
    if name.startswith("ModelNet"):  # PyG numbers the class folders in sorted order
        return sorted(p.name for p in raw.iterdir() if p.is_dir())
    if name == "S3DIS":
        return list(S3DIS_CLASSES)
    parts = sorted((i, f"{cat}_{j}") for cat, ids in pyg.seg_classes.items()
                   for j, i in enumerate(ids))
    return [n for _, n in parts]


@DATASETS.register("pyg")
def _pyg(d, seed, splits, progress):
    name = ALIASES.get(d["pyg"], d["pyg"])
    if name not in SETS:
        raise ConfigError(f"data.pyg must be one of {', '.join(SETS)}, got {d['pyg']!r}")
    if d["position_norm"] not in ("normalize_scale", "none"):
        raise ConfigError("data.position_norm must be normalize_scale or none")
    _, task, default_n = SETS[name]
    root = processed_root(name, d)
    cls = _pyg_class(name)
    n = d["n_points"] or default_n

    def split(which: str, augment: bool):
        pyg = cls(str(root), **_kwargs(name, d, which))
        names = _class_names(name, pyg, root / "raw")
        return PyGPoints(pyg, name, task, names, n, seed, augment and task == "classification",
                         d["position_norm"])

    train = val = test = None
    if splits & {"train", "val"}:
        full = split("train", d["augment"])
        if name == "ShapeNet":
            train, val = full, split("val", False)
        else:
            plain = split("train", False)
            tr, va = _split_off(len(full), list(range(len(full))), d["val_fraction"], seed)
            train, val = Subset(full, tr), EpochZeroSubset(plain, va)
    if "test" in splits:
        test = split("test", False)
    ref = next(s for s in (train, val, test) if s is not None)
    sample = (ref.dataset if isinstance(ref, Subset) else ref)
    channels = int(sample[0][0].shape[0]) if len(sample) else 3
    return DataBundle(train, val, test, ref.class_names, channels, task,
                      {"layout": f"pyg/{name}", "processed": str(root)})
