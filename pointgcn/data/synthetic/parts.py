"""Objects with labelled parts, written as PartNet's semantic-segmentation h5 files.

`<out>/sem_seg_h5/<Category>-1/{train,val,test}-00.h5` with `data` (B, n_points, 3) float32,
`label_seg` (B, n_points) uint8 (0 = "other") and `data_num` (B,) int32 (points per shape, as
in the published files that PointCNN-style readers need), plus `{train,val,test}_files.txt`
whose lines are `./<split>-00.h5` like the published lists. Each category folder also holds
`part_names.json` (num_classes as for real PartNet at that level, and our label names), which
the h5 layout itself has no place for.

Shapes are built z-up from numpy primitives, then stored y-up (ShapeNet/PartNet convention),
centred on their bounding box and scaled to unit bounding-box diagonal. Proportions, optional
parts (arms, headrest, shelves, drawers, arms of desk lamps) and small "other" items vary so that
a part label cannot be read from height alone.
"""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from ..classes import partnet_num_classes
from .common import (Cylinder, Sphere, box, check_count, child_rngs, cylinder_z, sample_exact,
                     synth_folder)
from ...errors import InputError

ROOT = "sem_seg_h5"
LEVEL = 1
PART_NAMES = {
    "Chair": ("other", "chair_head", "chair_back", "chair_arm", "chair_seat", "chair_base"),
    "Table": ("other", "tabletop", "leg", "apron", "stretcher", "shelf", "drawer", "pedestal"),
    "Lamp": ("other", "lamp_base", "lamp_pole", "lamp_shade", "lamp_bulb", "lamp_arm"),
}
SPLITS = ("train", "val", "test")


def _tilt_x(quads, angle: float, pivot) -> list:
    """Rotate quads about the x axis through `pivot` (a reclining chair back)."""
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    pivot = np.asarray(pivot, float)
    return [q.transformed(rot, pivot - rot @ pivot) for q in quads]


def _legs(rng, hx, hy, z, inset, r):
    round_legs = rng.random() < 0.4
    out = []
    for sx in (-1, 1):
        for sy in (-1, 1):
            x, y = sx * (hx - inset), sy * (hy - inset)
            out += ([cylinder_z(x, y, 0, z, r, (True, False))] if round_legs else
                    box((x - r, y - r, 0), (x + r, y + r, z), ("-x", "+x", "-y", "+y", "-z")))
    return out


def chair(rng):
    w, d, hs = rng.uniform(0.2, 0.3), rng.uniform(0.19, 0.28), rng.uniform(0.38, 0.52)
    st, hb = rng.uniform(0.03, 0.1), rng.uniform(0.25, 0.6)
    parts = [(q, 4) for q in box((-w, -d, hs - st), (w, d, hs))]
    bt = rng.uniform(0.03, 0.09)
    back = box((-w * rng.uniform(0.8, 1.0), -d, hs), (w * rng.uniform(0.8, 1.0), -d + bt, hs + hb))
    tilt = rng.uniform(0.0, 0.3)
    parts += [(q, 2) for q in _tilt_x(back, tilt, (0, -d, hs))]
    top_y, top_z = -d - np.sin(tilt) * hb, hs + np.cos(tilt) * hb
    if rng.random() < 0.25:
        head = box((-w * 0.5, top_y, top_z + 0.02),
                   (w * 0.5, top_y + bt, top_z + rng.uniform(0.1, 0.2)))
        parts += [(q, 1) for q in _tilt_x(head, tilt, (0, top_y, top_z))]
    if rng.random() < 0.4:
        ha = rng.uniform(0.15, 0.28)
        for sx in (-1, 1):
            x = sx * (w + 0.02)
            parts += [(q, 3) for q in box((x - 0.025, -d, hs + ha - 0.04), (x + 0.025, d, hs + ha))]
            parts += [(q, 3) for q in box((x - 0.015, d - 0.05, hs),
                                          (x + 0.015, d - 0.02, hs + ha - 0.04))]
    if rng.random() < 0.35:  # swivel base: pole and five spokes
        parts.append((cylinder_z(0, 0, 0.06, hs - st, rng.uniform(0.02, 0.04)), 5))
        for a in np.linspace(0, 2 * np.pi, 6)[:5] + rng.uniform(0, 1):
            end = 0.28 * np.array([np.cos(a), np.sin(a), 0.0])
            parts.append((Cylinder(np.array([0, 0, 0.05]), end, 0.018, (False, True)), 5))
            parts.append((Sphere(end + (0, 0, 0.03), 0.025), 5))
    else:
        r = rng.uniform(0.015, 0.03)
        parts += [(q, 5) for q in _legs(rng, w, d, hs - st, 0.03, r)]
        if rng.random() < 0.3:  # footrest bar between the front legs (part of the base)
            z = rng.uniform(0.1, 0.25)
            parts += [(q, 5) for q in box((-w + 0.03, d - 0.04, z), (w - 0.03, d - 0.02, z + 0.03))]
    if rng.random() < 0.15:  # loose cushion
        parts += [(q, 0) for q in box((-w * 0.8, -d * 0.7, hs), (w * 0.8, d * 0.8, hs + 0.06))]
    return parts


def table(rng):
    h = rng.uniform(0.4, 0.5) if rng.random() < 0.2 else rng.uniform(0.65, 0.8)
    t = rng.uniform(0.02, 0.06)
    round_top = rng.random() < 0.25
    if round_top:
        r = rng.uniform(0.3, 0.6)
        parts = [(cylinder_z(0, 0, h - t, h, r, (True, True)), 1)]
        lx = ly = r * 0.72  # legs on the inscribed square
    else:
        lx, ly = rng.uniform(0.3, 0.9), rng.uniform(0.25, 0.55)
        parts = [(q, 1) for q in box((-lx, -ly, h - t), (lx, ly, h))]
    if rng.random() < 0.25:  # pedestal: column and foot, no legs
        parts += [(cylinder_z(0, 0, 0.03, h - t, rng.uniform(0.04, 0.09)), 7),
                  (cylinder_z(0, 0, 0, 0.03, min(lx, ly) * 0.8, (True, True)), 7)]
    else:
        inset, r = rng.uniform(0.03, 0.1), rng.uniform(0.02, 0.04)
        parts += [(q, 2) for q in _legs(rng, lx, ly, h - t, inset, r)]
        ix, iy = lx - inset, ly - inset  # leg centres
        if rng.random() < 0.5:  # apron under the top
            ah = rng.uniform(0.05, 0.12)
            for sy in (-1, 1):
                parts += [(q, 3) for q in box((-ix, sy * iy - 0.01, h - t - ah),
                                              (ix, sy * iy + 0.01, h - t))]
        if rng.random() < 0.3:  # stretchers low between the legs
            z = rng.uniform(0.08, 0.2)
            for sx in (-1, 1):
                parts += [(q, 4) for q in box((sx * ix - 0.015, -iy, z),
                                              (sx * ix + 0.015, iy, z + 0.03))]
        if rng.random() < 0.25:  # lower shelf
            z = rng.uniform(0.1, 0.3) * h
            parts += [(q, 5) for q in box((-ix, -iy, z), (ix, iy, z + 0.02))]
        if not round_top and rng.random() < 0.2:  # drawer box under one end
            drawer = box((ix * 0.3, -iy * 0.9, h - t - 0.15), (ix * 0.9, iy * 0.9, h - t),
                         ("-x", "+x", "-y", "+y", "-z"))
            parts += [(q, 6) for q in drawer]
    if rng.random() < 0.2:  # something lying on the top
        s = rng.uniform(0.05, 0.15)
        parts += [(q, 0) for q in box((-s, -s, h), (s, s, h + rng.uniform(0.02, 0.2)),
                                      ("-x", "+x", "-y", "+y", "+z"))]
    return parts


def lamp(rng):
    parts = []
    if rng.random() < 0.7:
        rb = rng.uniform(0.06, 0.18)
        parts.append((cylinder_z(0, 0, 0, rng.uniform(0.02, 0.06), rb, (True, True)), 1))
    else:
        s = rng.uniform(0.06, 0.15)
        parts += [(q, 1) for q in box((-s, -s, 0), (s, s, rng.uniform(0.03, 0.1)))]
    if rng.random() < 0.35:  # desk lamp: short pole, one or two arm segments, small shade
        p1 = np.array([0, 0, rng.uniform(0.05, 0.25)])
        parts.append((cylinder_z(0, 0, 0, p1[2], 0.015, (False, False)), 2))
        p2 = p1 + np.array([rng.uniform(-0.05, 0.1), 0, rng.uniform(0.2, 0.4)])
        p3 = p2 + np.array([rng.uniform(0.15, 0.35), 0, rng.uniform(-0.15, 0.05)])
        parts += [(Cylinder(p1, p2 - p1, 0.012, (False, False)), 5),
                  (Cylinder(p2, p3 - p2, 0.012, (False, False)), 5)]
        rs = rng.uniform(0.05, 0.1)
        parts.append((Cylinder(p3 + (0, 0, 0.03), np.array([0, 0, -0.12]), 0.015, (False, False),
                               radius_top=rs), 3))
        bulb = p3 - (0, 0, 0.06)
    else:
        h = rng.uniform(0.3, 1.6)
        parts.append((cylinder_z(0, 0, 0, h, rng.uniform(0.01, 0.03), (False, False)), 2))
        rs = rng.uniform(0.1, 0.25)
        hs = rs * rng.uniform(0.8, 1.6)
        if rng.random() < 0.3:  # globe shade
            parts.append((Sphere(np.array([0, 0, h]), rs, rng.uniform(0.7, 1.1)), 3))
        else:
            parts.append((Cylinder(np.array([0, 0, h - hs * 0.5]), np.array([0, 0, hs]),
                                   rs, (False, False), radius_top=rs * rng.uniform(0.5, 1.0)), 3))
        bulb = np.array([0, 0, h])
    if rng.random() < 0.5:
        parts.append((Sphere(bulb, rng.uniform(0.025, 0.045)), 4))
    if rng.random() < 0.3:  # switch box on the pole or a cord lying on the floor
        parts += [(q, 0) for q in box((0.02, -0.02, 0.0), (0.3, 0.02, 0.01), ("+z", "-y", "+y"))]
    return parts


BUILDERS = {"Chair": chair, "Table": table, "Lamp": lamp}
Y_UP = np.array([[1.0, 0, 0], [0, 0, 1.0], [0, -1.0, 0]])  # (x, y, z) z-up → (x, z, −y) y-up


def make_part_shape(category: str, rng: np.random.Generator, n_points: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Points (n_points, 3) float32, y-up, unit bbox diagonal, and their uint8 part labels."""
    parts = BUILDERS[category](rng)
    pts, owner = sample_exact(rng, [p for p, _ in parts], n_points)
    labels = np.array([lab for _, lab in parts], np.uint8)[owner]
    pts = pts @ Y_UP.T
    lo, hi = pts.min(0), pts.max(0)
    pts = (pts - (lo + hi) / 2) / np.linalg.norm(hi - lo)
    pts = pts + rng.normal(0, 0.004, pts.shape)
    order = rng.permutation(n_points)
    return pts[order].astype(np.float32), labels[order]


def _split_sizes(n: int) -> dict[str, int]:
    n_val, n_test = max(1, round(0.1 * n)), max(1, round(0.2 * n))
    return {"train": n - n_val - n_test, "val": n_val, "test": n_test}


def write_parts(out_dir: str | Path, n_shapes: int = 60, seed: int = 0, n_points: int = 2048,
                overwrite: bool = False) -> Path:
    """Write `n_shapes` shapes per category (Chair, Table, Lamp; level 1) as PartNet sem_seg h5.

    Splits are 70/10/20 % train/val/test (each at least one shape). Returns `<out>/sem_seg_h5`
    (new or empty; `overwrite` replaces an earlier synthetic one only: `synth_folder`).
    """
    n_shapes, seed = check_count("n_shapes", n_shapes, 3), check_count("seed", seed, 0)
    n_points = check_count("n_points", n_points, 16)
    if n_points > 100000:
        raise InputError(f"n_points must be at most 100000, got {n_points}")
    final = Path(out_dir) / ROOT
    with synth_folder(final, "parts", overwrite, seed=seed, n_shapes=n_shapes,
                      n_points=n_points) as tmp:
        for category, rng in zip(BUILDERS, child_rngs(seed, len(BUILDERS))):
            folder = tmp / f"{category}-{LEVEL}"
            folder.mkdir()
            for split, count in _split_sizes(n_shapes).items():
                shapes = [make_part_shape(category, rng, n_points) for _ in range(count)]
                with h5py.File(folder / f"{split}-00.h5", "w") as f:
                    f.create_dataset("data", data=np.stack([s[0] for s in shapes]))
                    f.create_dataset("label_seg", data=np.stack([s[1] for s in shapes]))
                    f.create_dataset("data_num", data=np.full(count, n_points, np.int32))
                (folder / f"{split}_files.txt").write_text(f"./{split}-00.h5\n", "ascii",
                                                           newline="\n")
            info = {"category": category, "level": LEVEL,
                    "num_classes": partnet_num_classes(category, LEVEL),
                    "part_names": list(PART_NAMES[category]),
                    "note": "label 0 = other; ids >= len(part_names) do not occur"}
            (folder / "part_names.json").write_text(json.dumps(info, indent=2) + "\n", "ascii",
                                                    newline="\n")
    return final
