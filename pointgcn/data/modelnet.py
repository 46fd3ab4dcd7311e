"""ModelNet40 / ModelNet10 classification in their published layouts, plus a prepared cache.

  tree       `<root>/<class>/{train,test}/<class>_XXXX.<ext>`: the original `ModelNet40/` and
             `ModelNet10/` OFF meshes (the `OFF8 6 0` glued header included), or any file
             `pointgcn.io.read_points` reads — e.g. ModelNet10 resampled to 1,024-point binary
             PCD files. Meshes are sampled on their faces (area-weighted, face normals, seeded
             per shape); clouds keep their first n_points stored points (and their normals if
             they have them)
  h5         `modelnet40_ply_hdf5_2048/ply_data_{train,test}K.h5`: `data` (N, 2048, 3) float32,
             `label` (N, 1), optional `normal`; `{train,test}_files.txt`, `shape_names.txt`
  resampled  `modelnet40_normal_resampled/<class>/<class>_XXXX.txt`: 10 000 lines `x,y,z,nx,ny,nz`;
             `modelnet40_shape_names.txt`, `modelnet40_{train,test}.txt` (ids like airplane_0001),
             and beside them `modelnet10_*` lists of the ModelNet10 subset: data set
             `modelnet10` reads those (`find_modelnet(root, "modelnet10")`)
  prepared   `modelnet_{train,test}.npz` written by `prepare_modelnet40` from off/resampled:
             points, normals (M, n, 3) float32, labels (M,), ids, classes — one read per split;
             dropped_faces (M,): faces with NaN/Inf corners left out (`drop_invalid`), so that
             every run on the prepared files reports them again (`ModelNet40.report`)

Class list: the data set's own names file when present (shape_names.txt,
modelnet40_shape_names.txt); a tree without one uses MODELNET40_CLASSES when its class
folders are exactly those 40, otherwise its folder names sorted (ModelNet10 and the procedural
shapes then get their own alphabetical order, as ModelNet's own lists do).
Like DGCNN and PointNet++, an item keeps the first n_points stored points; off and resampled
clouds are centred and scaled to the unit sphere (the h5 and prepared ones already are).
A data set to prepare or train on must be whole (`check_splits`): a train split, and in a
tree train shapes in every class folder; a test split in every class folder or in none (a
train-only tree, such as a data set whose test split is kept for an independent evaluation, is
stated in one line by `train`; `eval` needs the test split) — never a class or the test set
missing without a word. Clouds without normals are stored with `has_normals` false, so a
`normals: true` model refuses them. A mesh with NaN/Inf vertices is refused unless `drop_invalid`; the
error names the caller's switch for it (`--drop-invalid`, `data.drop_invalid=true`).
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from ..errors import ConfigError, FormatError, InputError
from ..io import SUPPORTED, ReadReport, read_points
from ..io.atomic import atomic_folder
from ..seeds import item_rng
from ..tasks import DEFAULT_POINTS
from .classes import MODELNET40_CLASSES
from .formats import integer_ids, read_h5, read_list_file, resolve_listed, write_npz
from .report import DataReport
from .transforms import normalize_unit_sphere, scale_anisotropic, shuffle, translate

SPLITS = ("train", "test")
NAMES_FILES = ("shape_names.txt", "modelnet40_shape_names.txt")
VARIANTS = ("modelnet40", "modelnet10")  # list-file prefixes of the resampled layout
DROPPED_FACES = "faces with NaN/Inf corners dropped"


@dataclass
class ModelNetSource:
    kind: str  # "tree" | "h5" | "resampled" | "prepared"
    path: Path
    classes: tuple[str, ...] = field(default=MODELNET40_CLASSES)
    lists: str = "modelnet40"  # resampled: the prefix of its list files (VARIANTS)


def _names_file(folder: Path, names_files=NAMES_FILES) -> tuple[str, ...] | None:
    for name in names_files:
        if (folder / name).is_file():
            names = tuple(read_list_file(folder / name))
            if len(set(names)) != len(names) or not names:
                raise FormatError(f"{folder / name}: empty or repeated class names")
            return names
    return None


def _shape_files(folder: Path) -> list[Path]:
    """The shape files of one `<class>/<split>` folder, sorted (hidden files skipped)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in SUPPORTED
                  and not p.name.startswith(".") and p.is_file())


def _tree_classes(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()
                  if p.is_dir() and any(_shape_files(p / s) for s in SPLITS))


def find_modelnet(root: str | Path, variant: str = "modelnet40") -> ModelNetSource:
    """Which ModelNet layout `root` (or its standard child folder) holds, and its classes;
    `variant` (modelnet40 | modelnet10) picks the resampled layout's list files."""
    root = Path(root)
    variant = variant if variant in VARIANTS else "modelnet40"
    if not root.is_dir():
        raise InputError(f"{root}: no such folder")
    if any((root / f"modelnet_{s}.npz").is_file() for s in SPLITS):
        path = next(root / f"modelnet_{s}.npz" for s in SPLITS
                    if (root / f"modelnet_{s}.npz").is_file())
        classes = read_prepared(path, ("classes",))["classes"]
        return ModelNetSource("prepared", root, tuple(str(c) for c in classes))
    for cand in (root, root / "modelnet40_ply_hdf5_2048"):
        if any((cand / f"{s}_files.txt").is_file() for s in SPLITS):
            return ModelNetSource("h5", cand, _names_file(cand) or MODELNET40_CLASSES)
    for cand in (root, root / "modelnet40_normal_resampled"):
        if any((cand / f"{variant}_{s}.txt").is_file() for s in SPLITS):
            names = (_names_file(cand, (f"{variant}_shape_names.txt",)) or
                     (MODELNET40_CLASSES if variant == "modelnet40" else None))
            if names is None:
                raise FormatError(f"{cand}: no {variant}_shape_names.txt beside its "
                                  f"{variant}_train.txt")
            return ModelNetSource("resampled", cand, names, variant)
        if any((cand / f"{v}_{s}.txt").is_file() for v in VARIANTS for s in SPLITS):
            raise FormatError(f"{cand}: a resampled ModelNet folder without {variant}_train.txt "
                              f"/ {variant}_test.txt (its lists are of another variant)")
    for cand in (root, root / "ModelNet40", root / "ModelNet10"):
        if cand.is_dir() and (folders := _tree_classes(cand)):
            names = _names_file(cand)
            if names is None:
                names = (MODELNET40_CLASSES if set(folders) == set(MODELNET40_CLASSES)
                         else tuple(folders))
            return ModelNetSource("tree", cand, names)
    raise FormatError(f"{root}: not a ModelNet folder (expected <class>/{{train,test}}/<shape "
                      f"files>, train_files.txt + h5 files, modelnet40_train.txt, or "
                      f"modelnet_*.npz)")


def read_prepared(path: Path, keys: tuple[str, ...], optional: tuple[str, ...] = ()
                  ) -> dict[str, np.ndarray]:
    """Arrays `keys` (and those of `optional` it has) of a `modelnet_<split>.npz` written by
    `prepare_modelnet40`."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: np.asarray(z[k]) for k in keys + tuple(o for o in optional if o in z)}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        text = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise FormatError(f"{path}: not a prepared ModelNet split ({text})") from None


def has_split(src: ModelNetSource, split: str) -> bool:
    """Whether the data set holds `split` at all (a split that is there but broken is an
    error when read, never a silently missing split)."""
    if src.kind == "tree":
        return any(_shape_files(src.path / cls / split) for cls in _tree_classes(src.path))
    if src.kind == "resampled":
        return (src.path / f"{src.lists}_{split}.txt").is_file()
    if src.kind == "prepared":
        return (src.path / f"modelnet_{split}.npz").is_file()
    return (src.path / f"{split}_files.txt").is_file()


def check_splits(src: ModelNetSource, need_test: bool = True) -> None:
    """Refuse a data set that lacks its train split (or, with `need_test`, its test split), or
    a tree whose class folders hold train shapes only in part, or test shapes only in part:
    training on it would quietly miss a class or test on some classes only. A tree without any
    test folder is a train-only data set (say so; `need_test=False` accepts it)."""
    for split in SPLITS if need_test else ("train",):
        if not has_split(src, split):
            where = {"tree": f"<class>/{split}/<shapes>", "resampled": f"{src.lists}_{split}.txt",
                     "prepared": f"modelnet_{split}.npz", "h5": f"{split}_files.txt"}[src.kind]
            raise FormatError(f"{src.path}: no {split} split ({where})")
    if src.kind == "tree":
        for split in SPLITS:
            have = {cls: bool(_shape_files(src.path / cls / split))
                    for cls in _tree_classes(src.path)}
            if any(have.values()) or split == "train":
                missing = [cls for cls, ok in have.items() if not ok]
                if missing:
                    raise FormatError(f"{src.path / missing[0]}: no {split} shapes "
                                      f"({missing[0]}/{split}/); every class folder needs "
                                      f"{split} shapes when any has them")


def _class_index(classes, name: str, where) -> int:
    try:
        return classes.index(name)
    except ValueError:
        raise FormatError(f"{where}: class {name!r} is not in the class list") from None


def list_split(src: ModelNetSource, split: str) -> tuple[list, np.ndarray]:
    """(items, labels) of a file-per-shape split: items are paths (off/resampled)."""
    items, labels = [], []
    if src.kind == "tree":
        for cls in _tree_classes(src.path):
            for p in _shape_files(src.path / cls / split):
                items.append(p)
                labels.append(_class_index(src.classes, cls, p))
    elif src.kind == "resampled":
        listing = src.path / f"{src.lists}_{split}.txt"
        for shape_id in read_list_file(listing):
            cls = shape_id.rsplit("_", 1)[0]
            items.append(src.path / cls / f"{shape_id}.txt")
            labels.append(_class_index(src.classes, cls, listing))
    else:
        raise InputError(f"{src.path}: {src.kind} data has no per-shape files")
    if not items:
        raise FormatError(f"{src.path}: no shapes in the {split} split")
    return items, np.asarray(labels, dtype=np.int64)


def read_resampled(path: Path) -> np.ndarray:
    """One `x,y,z,nx,ny,nz` text file → (N, 6) float32."""
    try:
        rows = np.loadtxt(path, delimiter=",", dtype=np.float32, ndmin=2)
    except (OSError, ValueError) as e:
        raise FormatError(f"{path}: not comma-separated x,y,z,nx,ny,nz lines ({e})") from None
    if rows.shape[1] != 6 or len(rows) == 0 or not np.isfinite(rows).all():
        raise FormatError(f"{path}: expected N×6 finite values, got {rows.shape}")
    return rows


@dataclass
class Shape:
    points: np.ndarray  # (n_points, 6) float32: x y z nx ny nz (normals zero without has_normals)
    dropped: int = 0  # mesh faces left out for NaN/Inf corners
    has_normals: bool = True


def read_shape(path: Path, n_points: int, seed: int, drop_invalid: bool = False,
               drop_switch: str = "drop_invalid=True") -> Shape:
    """One shape file of a tree: a mesh → n_points on its faces with face normals (faces with
    NaN/Inf corners refused unless `drop_invalid`; the error names `drop_switch`); a cloud →
    its first n_points points (NaN/Inf points refused the same way)."""
    report = ReadReport()
    cloud = read_points(path, n_points=n_points, drop_invalid=True, report=report,
                        seed=int(item_rng(seed, path.stem).integers(2**31)))
    if report.dropped and not drop_invalid:
        what = "faces have NaN/Inf vertex" if report.sampled else "points have NaN/Inf"
        raise FormatError(f"{path}: {report.dropped} {what} coordinates; {drop_switch} drops "
                          "them")
    if len(cloud) < n_points:
        raise FormatError(f"{path}: {len(cloud)} points, fewer than n_points={n_points}")
    normals = cloud.normals
    has_normals = normals is not None
    xyz = cloud.points[:n_points].astype(np.float32)
    nrm = normals[:n_points] if has_normals else np.zeros_like(xyz)
    return Shape(np.concatenate([xyz, nrm], axis=1), report.dropped, has_normals)


def read_h5_split(src: ModelNetSource, split: str):
    """(points (M, P, 3 or 6) float32, labels (M,)) of the h5 split; normals when stored."""
    datas, labels = [], []
    for entry in read_list_file(src.path / f"{split}_files.txt"):
        path = resolve_listed(src.path, entry)
        arrays = read_h5(path, {"data": 3, "label": 2}, {"normal": 3})
        data = arrays["data"].astype(np.float32)
        if data.shape[2] != 3 or arrays["label"].shape[1] != 1:
            raise FormatError(f"{path}: expected data (N, P, 3) and label (N, 1)")
        if "normal" in arrays:
            data = np.concatenate([data, arrays["normal"].astype(np.float32)], axis=2)
        datas.append(data)
        labels.append(integer_ids(arrays["label"], path, "label")[:, 0].astype(np.int64))
    if not datas:
        raise FormatError(f"{src.path / f'{split}_files.txt'}: lists no h5 files")
    widths = {d.shape[2] for d in datas}
    if len(widths) > 1:
        datas = [d[:, :, :3] for d in datas]
    return np.concatenate(datas), np.concatenate(labels)


def load_shape(kind: str, path: Path, n_points: int, seed: int, drop_invalid: bool = False,
               drop_switch: str = "drop_invalid=True") -> Shape:
    """One tree/resampled shape, centred and scaled to the unit sphere (`read_shape`)."""
    if kind == "tree":
        shape = read_shape(path, n_points, seed, drop_invalid, drop_switch)
    else:
        pts = read_resampled(path)[:n_points]
        if len(pts) < n_points:
            raise FormatError(f"{path}: {len(pts)} points, fewer than n_points={n_points}")
        shape = Shape(pts)
    shape.points = normalize_unit_sphere(shape.points)
    return shape


class ModelNet40(Dataset):
    """(points (3 or 6, n_points) float32, label int64) per shape.

    normals=True adds nx, ny, nz channels (off, resampled, prepared, or h5 with `normal`).
    augment=True applies DGCNN's training augmentation (anisotropic scale in [2/3, 3/2],
    shift in [−0.2, 0.2], shuffle) from a generator fixed by (seed, epoch, index).
    drop_invalid=True samples OFF meshes without their NaN/Inf faces (prepared files: `report`
    lists the shapes that lost faces when they were prepared). `origin`: the user's folder a
    prepared cache was made from, which messages name instead of the cache.
    """

    task = "classification"

    def __init__(self, root: str | Path, split: str = "train",
                 n_points: int = DEFAULT_POINTS["classification"], normals: bool = False,
                 augment: bool = False, seed: int = 0, drop_invalid: bool = False,
                 variant: str = "modelnet40", origin: str | Path | None = None):
        if split not in SPLITS:
            raise ConfigError(f"split must be train or test, got {split!r}")
        self.source = find_modelnet(root, variant)
        self.classes = self.source.classes
        self.class_names = list(self.classes)
        self.num_classes = len(self.classes)
        self.n_points, self.normals, self.augment, self.seed = n_points, normals, augment, seed
        self.drop_invalid = drop_invalid
        self.epoch = 0
        self.points, self.files = None, None
        self.has_normals = True  # tree clouds without normals: known once read (prepared)
        self.report = DataReport("shapes")
        kind = self.source.kind
        if kind == "h5":
            self.points, self.labels = read_h5_split(self.source, split)
        elif kind == "prepared":
            path = self.source.path / f"modelnet_{split}.npz"
            if not path.is_file():
                raise FormatError(f"{self.source.path}: no prepared {split} split ({path.name})")
            z = read_prepared(path, ("points", "normals", "labels", "ids"),
                              ("dropped_faces", "has_normals"))
            self.points = np.concatenate([z["points"], z["normals"]], axis=2)
            self.has_normals = bool(z.get("has_normals", True))
            self.labels = z["labels"].astype(np.int64)
            for shape, dropped in zip(z["ids"], z.get("dropped_faces", np.zeros(len(z["ids"])))):
                self.report.add(str(shape), {DROPPED_FACES: int(dropped)})
        else:
            self.files, self.labels = list_split(self.source, split)
        stored = None if self.points is None else self.points.shape[1]
        if stored is not None and n_points > stored:
            raise ConfigError(f"n_points={n_points} exceeds the {stored} points stored per "
                              f"shape in {self.source.path}")
        if normals and (not self.has_normals or (self.points is not None
                                                 and self.points.shape[2] < 6)):
            raise ConfigError(f"{origin or self.source.path}: these files store no normals "
                              "(data.normals must be false)")
        if self.labels.min() < 0 or self.labels.max() >= self.num_classes:
            raise FormatError(f"{self.source.path}: labels outside 0–{self.num_classes - 1}")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.labels)

    def load(self, index: int) -> np.ndarray:
        """The stored shape (P, 3 or 6) before augmentation, first n_points only."""
        if self.points is not None:
            return self.points[index, :self.n_points]
        shape = load_shape(self.source.kind, self.files[index], self.n_points, self.seed,
                           self.drop_invalid)
        if self.normals and not shape.has_normals:
            raise ConfigError(f"{self.files[index]}: no normals (data.normals must be false)")
        return shape.points

    def __getitem__(self, index: int):
        pts = self.load(int(index))
        pts = pts if self.normals else pts[:, :3]
        if self.augment:
            rng = item_rng(self.seed, self.epoch, int(index))
            pts = scale_anisotropic(pts, rng, normals=self.normals)
            pts = shuffle(translate(pts, rng), rng)
        return (torch.from_numpy(np.ascontiguousarray(pts.T, dtype=np.float32)),
                torch.tensor(int(self.labels[index])))


def prepare_modelnet40(src: str | Path, out: str | Path,
                       n_points: int = DEFAULT_POINTS["classification"], seed: int = 0,
                       progress: bool = True, drop_invalid: bool = False,
                       drop_switch: str = "drop_invalid=True",
                       report: DataReport | None = None, variant: str = "modelnet40") -> dict:
    """Sample (tree meshes) or read (tree clouds, resampled) every shape once and write
    `modelnet_{split}.npz` to `out` (unit-sphere normalised, n_points each; `has_normals`
    false when any shape lacks normals). All or nothing (`atomic_folder`): `out`
    must be new or empty and appears only when every split is written, so an interrupted run
    leaves no `modelnet_train.npz` behind. Returns shapes per split; shapes that lost faces
    (`drop_invalid`) go into `report`; `variant` picks a resampled folder's lists."""
    source = find_modelnet(src, variant)
    if source.kind not in ("tree", "resampled"):
        raise InputError(f"{source.path}: already in a ready-to-train layout ({source.kind}); "
                         f"use it directly")
    check_splits(source, need_test=False)
    counts = {}
    with atomic_folder(out) as stage:
        for split in [s for s in SPLITS if has_split(source, s)]:
            files, labels = list_split(source, split)
            pts = np.empty((len(files), n_points, 6), dtype=np.float32)
            dropped = np.zeros(len(files), dtype=np.int64)
            normals = True
            items = range(len(files))
            if progress:
                items = tqdm(items, desc=f"{split} shapes", unit="shape")
            for i in items:
                shape = load_shape(source.kind, files[i], n_points, seed, drop_invalid,
                                   drop_switch)
                pts[i], dropped[i] = shape.points, shape.dropped
                normals &= shape.has_normals
            write_npz(stage / f"modelnet_{split}.npz", points=pts[:, :, :3],
                      normals=pts[:, :, 3:], labels=labels, ids=np.array([p.stem for p in files]),
                      classes=np.array(source.classes), n_points=np.array(n_points),
                      dropped_faces=dropped, has_normals=np.array(normals))
            counts[split] = len(files)
            if report is not None:
                for path, n in zip(files, dropped):
                    report.add(path.stem, {DROPPED_FACES: int(n)})
    return counts
