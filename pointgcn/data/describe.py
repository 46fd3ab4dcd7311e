"""`pointgcn data info`: what a file or a data-set folder holds, as a JSON-able dict."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import h5py
import numpy as np

from ..errors import FormatError, InputError
from ..io import ReadReport, read_points
from ..io.read import MESH_FORMATS
from . import modelnet, partnet
from .blocks import BLOCK_CHANNELS
from .classes import S3DIS_CLASSES
from .formats import open_h5, read_list_file, resolve_listed
from .s3dis import find_s3dis, npy_rooms, room_area
from .s3dis_raw import class_of_annotation, list_raw_rooms


def describe(path: str | Path) -> dict:
    """Summary of a point-cloud/mesh/h5 file or of an S3DIS / ModelNet / PartNet folder."""
    path = Path(path)
    if path.is_dir():
        return describe_folder(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.suffix.lower() in (".h5", ".hdf5"):
        return describe_h5(path)
    return describe_cloud(path)


def _histogram(labels: np.ndarray, names=None) -> dict:
    values, counts = np.unique(np.asarray(labels).ravel(), return_counts=True)
    name = (lambda v: names[v] if names is not None and 0 <= v < len(names) else str(v))
    return {name(int(v)): int(c) for v, c in zip(values, counts)}


def describe_cloud(path: Path) -> dict:
    report = ReadReport()
    # a file's points are its points: a mesh's vertices, not samples (classify samples faces)
    cloud = read_points(path, report=report, drop_invalid=True, as_mesh=False)
    info = {"kind": "file", "path": str(path), "format": report.format, "points": len(cloud),
            **({"invalid_points": f"{report.dropped} with NaN/Inf coordinates (not counted "
                                  "above)"}
               if report.dropped else {}),
            **({"mesh_faces": int(report.n_faces)} if report.n_faces else {}),
            **({"notes": list(report.notes)} if report.notes else {}),
            "colors": cloud.colors is not None, "normals": cloud.normals is not None,
            "labels": cloud.labels is not None, "fields": sorted(cloud.fields),
            "bounds_min": [round(float(v), 6) for v in cloud.absolute_points().min(axis=0)],
            "bounds_max": [round(float(v), 6) for v in cloud.absolute_points().max(axis=0)],
            **({"local_origin": [float(v) for v in cloud.offset]} if cloud.has_offset else {})}
    if cloud.labels is not None:
        info["label_histogram"] = _histogram(cloud.labels)
    return info


def describe_h5(path: Path) -> dict:
    with open_h5(path) as f:
        datasets = {k: {"shape": list(f[k].shape), "dtype": str(f[k].dtype)}
                    for k in f if isinstance(f[k], h5py.Dataset)}
        info = {"kind": "h5", "path": str(path), "datasets": datasets}
        for key in ("label", "label_seg"):
            if key in f:
                info["label_histogram"] = _histogram(f[key][...])
    return info


def describe_folder(path: Path) -> dict:
    for finder, describer in ((find_s3dis, _s3dis), (partnet.find_partnet, _partnet),
                              (modelnet.find_modelnet, _modelnet)):
        try:
            found = finder(path)
        except FormatError:
            continue
        return describer(found)
    raise FormatError(f"{path}: not a recognised data set (S3DIS raw/npy/h5, ModelNet "
                      f"off/h5/resampled/prepared, PartNet sem_seg_h5)")


def _s3dis(src) -> dict:
    info = {"kind": f"s3dis/{src.kind}", "path": str(src.path), "classes": list(S3DIS_CLASSES)}
    if src.kind == "raw":
        rooms = list_raw_rooms(src.path)
        info["rooms_per_area"] = dict(sorted(Counter(f"Area_{a}" for a, _ in rooms).items()))
        objects = Counter(S3DIS_CLASSES[class_of_annotation(f)]
                          for _, room in rooms for f in (room / "Annotations").glob("*.txt"))
        info["objects_per_class"] = {c: objects[c] for c in S3DIS_CLASSES if objects[c]}
        info["channels"] = ["x", "y", "z", "r", "g", "b"]
    elif src.kind == "npy":
        rooms = npy_rooms(src.path)
        info["rooms_per_area"] = dict(sorted(Counter(f"Area_{room_area(n)}"
                                                     for n, _ in rooms).items()))
        hist, points = Counter(), 0
        for _, p in rooms:
            rows = np.load(p, mmap_mode="r")
            points += len(rows)
            hist.update(_histogram(np.asarray(rows[:, 6]).astype(np.int64), S3DIS_CLASSES))
        info["points"] = points
        info["points_per_class"] = dict(hist)
        info["channels"] = ["x", "y", "z", "r", "g", "b", "label"]
    else:
        rooms = read_list_file(src.path / "room_filelist.txt")
        hist, blocks, points = Counter(), 0, None
        for entry in read_list_file(src.path / "all_files.txt"):  # labels only: data is big
            with open_h5(resolve_listed(src.path, entry)) as f:
                blocks += f["data"].shape[0]
                points = int(f["data"].shape[1])
                hist.update(_histogram(f["label"][...], S3DIS_CLASSES))
        if blocks != len(rooms):
            raise FormatError(f"{src.path / 'room_filelist.txt'}: {len(rooms)} lines for "
                              f"{blocks} h5 blocks")
        info["blocks_per_area"] = dict(sorted(Counter(f"Area_{room_area(r)}"
                                                      for r in rooms).items()))
        info["points_per_block"] = points
        info["points_per_class"] = {c: hist[c] for c in S3DIS_CLASSES if hist[c]}
        info["channels"] = list(BLOCK_CHANNELS)
    return info


def _modelnet(src) -> dict:
    info = {"kind": f"modelnet/{src.kind}", "path": str(src.path), "classes": list(src.classes),
            "splits": {}}
    for split in modelnet.SPLITS:
        found = _modelnet_labels(src, split)
        if found is None:
            continue
        labels, channels = found
        info["splits"][split] = {"shapes": int(len(labels)),
                                 "per_class": _histogram(labels, src.classes)}
        info["channels"] = channels
        if src.kind == "tree":
            files = modelnet.list_split(src, split)[0]
            info["splits"][split]["files"] = dict(Counter(p.suffix.lower() for p in files))
    if "test" not in info["splits"]:
        info["note"] = "no test split: validation is carved from train; eval needs a test split"
    return info


def _modelnet_labels(src, split):
    """(labels, channels) of a split, or None when the data set has no such split."""
    if not modelnet.has_split(src, split):
        return None
    if src.kind == "resampled":
        return modelnet.list_split(src, split)[1], ["x", "y", "z", "nx", "ny", "nz"]
    if src.kind == "tree":  # meshes give face normals; clouds only what they store
        files, labels = modelnet.list_split(src, split)
        meshes = all(p.suffix.lower() in MESH_FORMATS for p in files)
        return labels, ["x", "y", "z"] + (["nx", "ny", "nz"] if meshes else [])
    if src.kind == "prepared":
        labels = modelnet.read_prepared(src.path / f"modelnet_{split}.npz", ("labels",))["labels"]
        return labels, ["x", "y", "z", "nx", "ny", "nz"]
    labels, channels = [], ["x", "y", "z"]
    for entry in read_list_file(src.path / f"{split}_files.txt"):
        with open_h5(resolve_listed(src.path, entry)) as f:
            labels.append(f["label"][...].ravel())
            if "normal" in f:
                channels = ["x", "y", "z", "nx", "ny", "nz"]
    return np.concatenate(labels), channels


def _partnet(base) -> dict:
    tasks = {}
    for category, level in partnet.list_tasks(base):
        task_dir = base / f"{category}-{level}"
        entry = {"classes": partnet.num_classes(task_dir, category, level)}
        for split in partnet.SPLITS:
            listing = task_dir / f"{split}_files.txt"
            if not listing.is_file():
                continue
            shapes, points = 0, None
            for name in read_list_file(listing):
                with open_h5(resolve_listed(task_dir, name)) as f:
                    shapes += f["data"].shape[0]
                    points = f["data"].shape[1]
            entry[split] = {"shapes": shapes, "points_per_shape": points}
        tasks[f"{category}-{level}"] = entry
    return {"kind": "partnet/sem_seg_h5", "path": str(base), "tasks": tasks,
            "channels": ["x", "y", "z"]}


def format_info(info: dict, indent: int = 0) -> str:
    """Readable indented text of a `describe` result."""
    lines = []
    pad = "  " * indent
    for key, value in info.items():
        if isinstance(value, dict) and value:
            lines.append(f"{pad}{key}:")
            lines.append(format_info(value, indent + 1))
        elif isinstance(value, list):
            lines.append(f"{pad}{key}: {', '.join(str(v) for v in value) or '-'}")
        else:
            lines.append(f"{pad}{key}: {value}")
    return "\n".join(lines)
