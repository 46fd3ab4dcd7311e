"""Colours: the one place for class palettes, and per-point colouring by RGB, height or class.

Palettes are (K, 3) float arrays in [0, 1], indexed by class id. S3DIS uses the colours of
PointNet's `indoor3d_util.py` that most S3DIS figures since reuse; ModelNet40, parts and any
other label set use `distinct_colors`, which is prefix-stable (class i has the same colour
whatever the number of classes), so two pictures of the same label set always agree.
"""
from __future__ import annotations

import functools

import numpy as np

from ..data.classes import MODELNET40_CLASSES, S3DIS_CLASSES
from ..errors import InputError

# S3DIS, in S3DIS_CLASSES order (ceiling, floor, wall, beam, column, window, door, table,
# chair, sofa, bookcase, board, clutter).
S3DIS_COLORS = np.array([
    [0, 255, 0], [0, 0, 255], [0, 255, 255], [255, 255, 0], [255, 0, 255], [100, 100, 255],
    [200, 200, 100], [170, 120, 200], [255, 0, 0], [200, 100, 100], [10, 200, 100],
    [200, 200, 200], [50, 50, 50]], dtype=np.float32) / 255.0

# matplotlib's tab10: the first ten distinct colours, well tested for separability.
_TAB10 = np.array([
    [31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189],
    [140, 86, 75], [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207]],
    dtype=np.float32) / 255.0

UNLABELLED_COLOR = np.array([0.75, 0.75, 0.75], np.float32)  # label < 0 (ignored / unknown)
ERROR_COLOR = np.array([1.0, 0.0, 0.0], np.float32)         # wrong predictions (unless a class is red)
# Saturated colours a compare panel may mark wrong points with: `error_color` takes the one
# farthest from every class colour of the palette (S3DIS chair is red, column magenta).
ERROR_CANDIDATES = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 1.0], [1.0, 0.45, 0.0],
                             [0.0, 0.0, 0.0], [0.55, 0.0, 1.0], [0.0, 0.6, 0.0]], np.float32)
ERROR_NAMES = ("red", "magenta", "orange", "black", "violet", "green")
PARTS_MAX = 64                                               # PartNet's largest is Table-3: 52

PALETTES = ("s3dis", "modelnet40", "parts", "generic")


@functools.lru_cache(maxsize=8)
def _greedy_colors(n: int) -> np.ndarray:
    """tab10, then greedily the grid colour farthest from all chosen ones (and from the white
    background and the error red), so each new class gets the most distinguishable colour left."""
    levels = np.linspace(0, 1, 8)
    grid = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(-1, 3)
    avoid = np.array([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    grid = grid[np.linalg.norm(grid[:, None] - avoid[None], axis=-1).min(1) > 0.3]
    chosen = list(_TAB10[:n])
    nearest = np.linalg.norm(grid[:, None] - _TAB10[None], axis=-1).min(1)
    while len(chosen) < n:
        pick = int(np.argmax(nearest))
        chosen.append(grid[pick])
        nearest = np.minimum(nearest, np.linalg.norm(grid - grid[pick], axis=1))
    return np.asarray(chosen, np.float32).reshape(n, 3)


def distinct_colors(n: int) -> np.ndarray:
    """n visually distinct colours, prefix-stable: class i gets the same colour for any n."""
    if n > 200:  # the greedy grid runs out of well-separated colours; repeat rather than fail
        return np.resize(_greedy_colors(200), (n, 3)).copy()
    return _greedy_colors(max(n, 0)).copy()


def palette_colors(palette: str | np.ndarray, n_classes: int | None = None) -> np.ndarray:
    """The (K, 3) colour table of a named palette (or a given array), at least n_classes long."""
    if not isinstance(palette, str):
        table = np.asarray(palette, np.float32)
        if table.ndim != 2 or table.shape[1] != 3:
            raise InputError(f"a palette array must be (K, 3), got {table.shape}")
        return table
    if palette == "s3dis":
        return S3DIS_COLORS
    if palette == "modelnet40":
        return distinct_colors(len(MODELNET40_CLASSES))
    if palette == "parts":  # PartNet h5 label 0 is "other": grey, parts start at 1
        return np.vstack([UNLABELLED_COLOR, distinct_colors(max(PARTS_MAX, n_classes or 0) - 1)])
    if palette == "generic":
        return distinct_colors(max(1, n_classes or 1))
    raise InputError(f"unknown palette {palette!r} (choose from {', '.join(PALETTES)})")


def palette_names(palette: str | np.ndarray, n_classes: int) -> list[str]:
    """Class names for a legend: the data set's names where known, else 'class i' / 'part i'."""
    if palette == "s3dis":
        return list(S3DIS_CLASSES)
    if palette == "modelnet40":
        return list(MODELNET40_CLASSES)
    if palette == "parts":
        return ["other"] + [f"part {i}" for i in range(1, n_classes)]
    return [f"class {i}" for i in range(n_classes)]


def choose_palette(n_classes: int, room: bool) -> str:
    """`auto` palette: S3DIS colours for a room with at most 13 classes, else distinct colours."""
    return "s3dis" if room and n_classes <= len(S3DIS_CLASSES) else "generic"


def as_class_ids(values: np.ndarray, what: str = "labels") -> np.ndarray:
    """Per-point class ids as int64; floats must be whole numbers (PLY often has float labels)."""
    values = np.asarray(values).reshape(-1)
    if values.dtype.kind in "iub":
        return values.astype(np.int64)
    if values.dtype.kind == "f" and np.all(np.isfinite(values)) \
            and np.all(values == np.round(values)):
        return values.astype(np.int64)
    raise InputError(f"{what} are not integer class ids (dtype {values.dtype}); "
                     "colour by rgb or height instead")


def class_colors(labels: np.ndarray, palette: str | np.ndarray = "generic",
                 n_classes: int | None = None) -> np.ndarray:
    """(N, 3) colours for class ids; labels < 0 are grey; an id beyond a fixed palette is an
    error."""
    labels = as_class_ids(labels)
    top = int(labels.max()) + 1 if labels.size else 0
    table = palette_colors(palette, max(top, n_classes or 0))
    if top > len(table):
        name = palette if isinstance(palette, str) else "given"
        raise InputError(f"label {top - 1} is out of range for the {name} palette "
                         f"({len(table)} classes)")
    out = np.tile(UNLABELLED_COLOR, (labels.size, 1))
    valid = labels >= 0
    out[valid] = table[labels[valid]]
    return out


HEIGHT_CMAP = "viridis"


def colormap_color(t: float, cmap: str = HEIGHT_CMAP) -> np.ndarray:
    """The colour at position t in [0, 1] of a colormap (for height legends)."""
    # lazy: matplotlib takes ≈0.4 s to import, and segment/classify use viz without drawing
    from matplotlib import colormaps

    return np.asarray(colormaps[cmap](float(t))[:3], np.float32)


def height_colors(points: np.ndarray, cmap: str = HEIGHT_CMAP
                  ) -> tuple[np.ndarray, tuple[float, float]]:
    """Colour by z through a colormap stretched over the 1st–99th percentile of z; returns
    (colors, (lo, hi))."""
    # lazy: matplotlib takes ≈0.4 s to import, and segment/classify use viz without drawing
    from matplotlib import colormaps

    z = np.asarray(points, np.float64)[:, 2]
    lo, hi = (np.percentile(z, [1, 99]) if z.size else (0.0, 1.0))
    t = np.clip((z - lo) / max(hi - lo, 1e-9), 0.0, 1.0)
    return colormaps[cmap](t)[:, :3].astype(np.float32), (float(lo), float(hi))


def dim(colors: np.ndarray, amount: float = 0.65) -> np.ndarray:
    """Blend colours towards white so saturated error red stands out against them."""
    return (np.asarray(colors, np.float32) * (1 - amount) + amount).astype(np.float32)


def error_color(palette: str | np.ndarray = "generic", n_classes: int | None = None
                ) -> tuple[np.ndarray, str]:
    """(colour, its name) of wrong points: red unless the palette has a class close to it, else
    the candidate farthest from every class colour, so the legend never shows one colour twice."""
    table = palette_colors(palette, n_classes or 0)
    if not len(table):
        return ERROR_COLOR.copy(), ERROR_NAMES[0]
    gap = np.linalg.norm(ERROR_CANDIDATES[:, None] - table[None], axis=-1).min(1)
    pick = 0 if gap[0] > 0.3 else int(np.argmax(gap))
    return ERROR_CANDIDATES[pick].copy(), ERROR_NAMES[pick]


def error_colors(truth: np.ndarray, pred: np.ndarray, palette: str | np.ndarray = "generic",
                 n_classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Colours for a prediction panel: correct points in their dimmed class colour, wrong ones
    in `error_color`.

    Points whose truth is < 0 (unlabelled) count as neither and stay grey. Returns (colors, wrong).
    """
    truth, pred = as_class_ids(truth, "ground-truth labels"), as_class_ids(pred, "predictions")
    if truth.shape != pred.shape:
        raise InputError(f"ground truth has {truth.size} points but the prediction has {pred.size}")
    colors = dim(class_colors(pred, palette, n_classes))
    wrong = (truth >= 0) & (truth != pred)
    top = int(max(truth.max(initial=-1), pred.max(initial=-1))) + 1
    colors[wrong] = error_color(palette, max(top, n_classes or 0))[0]
    colors[truth < 0] = UNLABELLED_COLOR
    return colors, wrong


def class_legend(labels: np.ndarray, palette: str | np.ndarray, n_classes: int | None = None,
                 names: list[str] | None = None) -> list[tuple[str, np.ndarray]]:
    """(name, colour) for each class present in `labels`, in class order."""
    labels = as_class_ids(labels)
    present = np.unique(labels[labels >= 0])
    top = int(present.max()) + 1 if present.size else 0
    table = palette_colors(palette, max(top, n_classes or 0))
    if names is None:
        names = palette_names(palette, len(table))
    return [(names[c] if c < len(names) else f"class {c}", table[c]) for c in present.tolist()]
