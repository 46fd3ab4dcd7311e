"""Config `data:` section → train / validation / test datasets for the engine.

Validation never touches the test split: S3DIS holds out whole training rooms (a fraction,
chosen by seed), ModelNet40 a fraction of the training shapes, PartNet uses its own val split.

data:
  dataset: s3dis | modelnet40 | modelnet10 | partnet   # modelnet10: the same loader, another
                                                       # class list (from the data set's folders)
         | pyg                  # PyG's own raw files (pointgcn.data.pyg_dataset)
  pyg: ModelNet10               # pyg: ModelNet10 | ModelNet40 | S3DIS | ShapeNet
  root: PATH                    # any layout the loader accepts
  n_points: null                # points per block / shape (null: pointgcn.tasks.DEFAULT_POINTS
                                # of the task; partnet: every stored point)
  test_area: 5                  # s3dis; 1…6 (6-fold = six runs)
  val_fraction: 0.15            # s3dis rooms / modelnet shapes held out for validation
  position_norm: normalize_scale  # s3dis (official DeepGCN preprocessing) | none
  normals: false                # modelnet40
  augment: true                 # modelnet40 / partnet training augmentation
  category: Chair               # partnet
  level: 1                      # partnet
  drop_invalid: false           # modelnet40 meshes: drop faces with NaN/Inf corners (reported)
                                # instead of refusing the shape
  up_axis: z                    # the data's up axis, recorded with the model (default: the
                                # layout's own, pointgcn.models.conventions.UP_AXIS)

What reading the data repaired or dropped (S3DIS raw lines, ModelNet faces) is in
`DataBundle.report`, for `train` to print; a ModelNet set must hold its train split (and the
test split when one is asked for) and every class of its list needs training shapes
(`check_splits`, `_require_every_class`); a train-only set is stated in `DataBundle.info`.
Each data set's builder joins `DATASETS` under its `data.dataset` name.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import cache_dir, check_int
from ..errors import ConfigError, FormatError, InputError
from ..registry import Registry
from ..seeds import validation_split_rng
from ..tasks import DEFAULT_POINTS
from .base import EpochZeroSubset, PointDataset, SampleList, Subset
from .modelnet import ModelNet40, check_splits, find_modelnet, has_split, prepare_modelnet40
from .partnet import PartNetSemSeg
from .report import DataReport
from .s3dis import S3DIS
from .sampling import typical_spacing

DATA_DEFAULTS = dict(dataset=None, root=None, n_points=None, test_area=5, val_fraction=0.15,
                     position_norm="normalize_scale", normals=False, augment=True,
                     category=None, level=1, block=1.0, stride=0.5, drop_invalid=False,
                     up_axis=None, pyg=None)
# data.dataset → builder(resolved data section, seed, splits, progress) → DataBundle; `pyg`
# is defined in its own module (it imports torch_geometric), loaded when a config names it.
DATASETS = Registry("data.dataset", plugins={"pyg": "pointgcn.data.pyg_dataset"})


@dataclass
class DataBundle:
    train: PointDataset | None
    val: PointDataset | None
    test: PointDataset | None
    class_names: list[str]
    in_channels: int
    task: str
    info: dict = field(default_factory=dict)
    report: DataReport = field(default_factory=DataReport)  # what reading repaired/dropped

    def complete_model_config(self, model: dict) -> None:
        """Fill the model config's in_channels, n_classes and task from the data, refusing
        a model that was given others (it could not learn this data)."""
        for key, want in (("in_channels", self.in_channels),
                          ("n_classes", len(self.class_names)), ("task", self.task)):
            have = model.setdefault(key, want)
            if have != want:
                raise ConfigError(f"model.{key} is {have} but the data set gives {want}")


@dataclass
class SampleSettings:
    """How a model's samples were cut (its run config's `data:`), so that inference and checks
    cut their inputs alike."""
    n_points: int
    block: float = 1.0
    stride: float = 0.5
    position_norm: str = "normalize_scale"
    normals: bool = False

    @classmethod
    def from_config(cls, cfg: dict) -> "SampleSettings":
        d = {**DATA_DEFAULTS, **cfg.get("data", {})}
        task = cfg.get("model", {}).get("task", "segmentation")
        n = d["n_points"] or DEFAULT_POINTS[task]
        return cls(int(n), float(d["block"]), float(d["stride"]), d["position_norm"],
                   bool(d["normals"]))


def resolve_data(cfg: dict) -> dict:
    unknown = set(cfg) - set(DATA_DEFAULTS)
    if unknown:
        raise ConfigError(f"unknown data keys: {', '.join(sorted(unknown))}")
    d = {**DATA_DEFAULTS, **cfg}
    DATASETS.canonical(d["dataset"])
    if not d["root"]:
        raise ConfigError("data.root is required (a folder holding the data set)")
    if not 0 < d["val_fraction"] < 1:
        raise ConfigError("data.val_fraction must be between 0 and 1")
    check_int(d, "n_points", "data")  # None: the data set's own default
    if not isinstance(d["drop_invalid"], bool):
        raise ConfigError(f"data.drop_invalid must be true or false, got {d['drop_invalid']!r}")
    if d["up_axis"] not in (None, "x", "y", "z"):
        raise ConfigError(f"data.up_axis must be x, y or z, got {d['up_axis']!r}")
    return d


def _split_off(n: int, groups: list, fraction: float, seed: int) -> tuple[list, list]:
    """Indices (train, val) holding out `fraction` of the distinct groups (rooms or shapes)."""
    names = sorted(set(groups))
    rng = validation_split_rng(seed)
    n_val = max(1, int(round(fraction * len(names))))
    if n_val >= len(names):
        raise ConfigError(f"only {len(names)} training groups; cannot hold out {n_val} for "
                          "validation (lower data.val_fraction or add data)")
    held = set(rng.choice(names, n_val, replace=False).tolist())
    train = [i for i in range(n) if groups[i] not in held]
    val = [i for i in range(n) if groups[i] in held]
    return train, val


def build_datasets(cfg: dict, splits=("train", "val"), progress: bool = False) -> DataBundle:
    d = resolve_data(cfg.get("data", {}))
    seed = int(cfg.get("seed", 0))
    return DATASETS.get(d["dataset"])(d, seed, set(splits), progress)


@DATASETS.register("s3dis")
def _s3dis(d, seed, splits, progress):
    common = dict(test_area=d["test_area"],
                  n_points=d["n_points"] or DEFAULT_POINTS["segmentation"], block=d["block"],
                  stride=d["stride"], position_norm=d["position_norm"], seed=seed,
                  progress=progress)
    train = val = test = None
    if splits & {"train", "val"}:
        full = S3DIS(d["root"], "train", **common)
        tr, va = _split_off(len(full), full.rooms, d["val_fraction"], seed)
        train, val = Subset(full, tr), EpochZeroSubset(full, va)
    if "test" in splits:
        test = S3DIS(d["root"], "test", **common)
    blocks = (full if train else test).data
    spacing = float(np.median([typical_spacing(b[:, :3]) for b in blocks[:: max(1, len(blocks)
                                                                             // 8)][:8]]))
    return DataBundle(train, val, test, list(S3DIS.class_names), 9, S3DIS.task,
                      {"test_area": d["test_area"], "layout": "s3dis", "spacing": spacing},
                      (full if train else test).report)


def _tree_signature(root: Path) -> str:
    """Names, sizes and modification times of every file below `root` (cheap even for
    ModelNet40's 12 k files): an edited or replaced source file makes a new cache."""
    h = hashlib.sha1()
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        st = f.stat()
        h.update(f"{f.relative_to(root)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


@DATASETS.register("modelnet10")  # the same loader; the classes come from its folders
@DATASETS.register("modelnet40")
def _modelnet(d, seed, splits, progress):
    n = d["n_points"] or DEFAULT_POINTS["classification"]
    root = Path(d["root"])
    variant = DATASETS.canonical(d["dataset"])  # a resampled folder's lists: modelnet10_*.txt
    source = find_modelnet(root, variant)
    check_splits(source, need_test="test" in splits)
    info = {"layout": f"modelnet/{source.kind}"}
    if not has_split(source, "test"):
        info["note"] = (f"{source.path}: no test split (a train-only data set): validation is "
                        "carved from train; `pointgcn eval` needs a test split")
    if source.kind in ("tree", "resampled"):  # read or sample every shape once, then cache
        lists = "" if variant == "modelnet40" else f"|{variant}"  # modelnet40 keys as before
        key = hashlib.sha1(f"{root.resolve()}|{_tree_signature(root)}|{n}|{seed}|"
                           f"{d['drop_invalid']}{lists}".encode()).hexdigest()[:16]
        root = cache_dir() / "modelnet" / key
        if not root.is_dir():  # prepare writes the folder whole or not at all
            try:
                prepare_modelnet40(d["root"], root, n_points=n, seed=seed, progress=progress,
                                   drop_invalid=d["drop_invalid"],
                                   drop_switch="data.drop_invalid=true", variant=variant)
            except InputError:
                if not root.is_dir():  # another process finishing the same cache is fine
                    raise
    kw = dict(n_points=n, normals=d["normals"], seed=seed, origin=d["root"])
    train = val = test = None
    if splits & {"train", "val"}:
        full = ModelNet40(root, "train", augment=d["augment"], **kw)
        _require_every_class(full)
        plain = ModelNet40(root, "train", augment=False, **kw)
        tr, va = _split_off(len(full), list(range(len(full))), d["val_fraction"], seed)
        train, val = Subset(full, tr), Subset(plain, va)
    if "test" in splits:
        test = ModelNet40(root, "test", **kw)
    ref = test or val.dataset
    return DataBundle(train, val, test, ref.class_names, 6 if d["normals"] else 3, ref.task,
                      info, report=(full if train else test).report)


def _require_every_class(train) -> None:
    """A class of the list without training shapes would be an output the model never learns."""
    counts = np.bincount(train.labels, minlength=train.num_classes)
    if not counts.all():
        missing = [train.classes[i] for i in np.flatnonzero(counts == 0)]
        raise FormatError(f"{train.source.path}: class {missing[0]!r} has no training shapes"
                          + (f" (nor {len(missing) - 1} more)" if len(missing) > 1 else ""))


@DATASETS.register("partnet")
def _partnet(d, seed, splits, progress):
    if not d["category"]:
        raise ConfigError("data.category is required for partnet (e.g. Chair)")
    kw = dict(category=d["category"], level=d["level"], n_points=d["n_points"], seed=seed)
    train = PartNetSemSeg(d["root"], split="train", augment=d["augment"], **kw) \
        if "train" in splits else None
    val = PartNetSemSeg(d["root"], split="val", **kw) if "val" in splits else None
    test = PartNetSemSeg(d["root"], split="test", **kw) if "test" in splits else None
    ref = next(x for x in (train, val, test) if x is not None)
    return DataBundle(train, val, test, ref.class_names, 3, ref.task,
                      {"category": d["category"], "level": d["level"], "layout": "partnet"})


def memory_bundle(train, val, class_names, task: str, in_channels: int = 3) -> DataBundle:
    """A `DataBundle` of in-memory train / validation samples (tests, benchmarks, tensors)."""
    return DataBundle(SampleList(train, class_names, task), SampleList(val, class_names, task),
                      None, list(class_names), in_channels, task)
