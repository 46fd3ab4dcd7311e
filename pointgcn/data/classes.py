"""Class names of the supported data sets, in their published order (one place each)."""
from __future__ import annotations

from ..errors import InputError

S3DIS_CLASSES = ("ceiling", "floor", "wall", "beam", "column", "window", "door", "table",
                 "chair", "sofa", "bookcase", "board", "clutter")

MODELNET40_CLASSES = (
    "airplane", "bathtub", "bed", "bench", "bookshelf", "bottle", "bowl", "car", "chair", "cone",
    "cup", "curtain", "desk", "door", "dresser", "flower_pot", "glass_box", "guitar", "keyboard",
    "lamp", "laptop", "mantel", "monitor", "night_stand", "person", "piano", "plant", "radio",
    "range_hood", "sink", "sofa", "stairs", "stool", "table", "tent", "toilet", "tv_stand", "vase",
    "wardrobe", "xbox")

# PartNet semantic segmentation: classes per category and level (1 coarse … 3 fine), "other"
# (h5 label 0) included, as in the PartNet paper's tables; categories without a level are
# absent. Checked against every stats/after_merging*_label_ids/<Category>-level-<L>.txt of
# daerduoCarey/partnet_dataset: each value is the file's line count + 1, the count PartNet's own
# training script uses (`num_class = len(lines) + 1  # with "other"`).
PARTNET_PARTS = {
    "Bag": {1: 4}, "Bed": {1: 4, 2: 10, 3: 15}, "Bottle": {1: 6, 3: 9}, "Bowl": {1: 4},
    "Chair": {1: 6, 2: 30, 3: 39}, "Clock": {1: 6, 3: 11}, "Dishwasher": {1: 3, 2: 5, 3: 7},
    "Display": {1: 3, 3: 4}, "Door": {1: 3, 2: 4, 3: 5}, "Earphone": {1: 6, 3: 10},
    "Faucet": {1: 8, 3: 12}, "Hat": {1: 6}, "Keyboard": {1: 3}, "Knife": {1: 5, 3: 10},
    "Lamp": {1: 18, 2: 28, 3: 41}, "Laptop": {1: 3}, "Microwave": {1: 3, 2: 5, 3: 6},
    "Mug": {1: 4}, "Refrigerator": {1: 3, 2: 6, 3: 7}, "Scissors": {1: 3},
    "StorageFurniture": {1: 7, 2: 19, 3: 24}, "Table": {1: 11, 2: 42, 3: 51},
    "TrashCan": {1: 5, 3: 11}, "Vase": {1: 4, 3: 6},
}


def partnet_num_classes(category: str, level: int) -> int:
    """Classes a model predicts for PartNet <category>-<level> ("other" included)."""
    if category not in PARTNET_PARTS or level not in PARTNET_PARTS[category]:
        raise InputError(f"PartNet has no {category}-{level}")
    return PARTNET_PARTS[category][level]


def default_class_names(model_cfg: dict) -> list[str]:
    """Names for a model that records none: S3DIS's for 13-class segmenters, ModelNet40's for
    40-class classifiers, else the class numbers."""
    n, task = int(model_cfg["n_classes"]), model_cfg.get("task")
    if task == "segmentation" and n == len(S3DIS_CLASSES):
        return list(S3DIS_CLASSES)
    if task == "classification" and n == len(MODELNET40_CLASSES):
        return list(MODELNET40_CLASSES)
    return [str(i) for i in range(n)]
