"""`render_png`: a cloud (or ground truth vs prediction) to a PNG with titles and a class legend.

The pipeline is the same for every backend: choose colours (RGB, height or class), drop the
ceiling of rooms, fit one camera, let `backends.render_panels` draw the bare panels, then lay
panels, titles and legend out on one matplotlib Agg figure of exactly the requested size.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io.atomic import atomic_path
from . import palettes as pal
from .backends import BACKGROUND, MATPLOTLIB_MAX_POINTS, Panel, render_panels
from .camera import ceiling_mask, fit_camera, normalized, resolve_view, y_up_to_z_up

COLOR_MODES = ("auto", "rgb", "height", "class")
MAX_LEGEND = 40
DEFAULT_SIZES = {1: (1280, 960), 2: (1600, 760)}  # one picture; ground truth beside prediction
LABEL_ALIASES = ("label", "labels", "class", "scalar_label", "scalar_class")


@dataclass
class RenderResult:
    path: Path
    backend: str
    points: int                       # points in the picture (after dropping ceiling / invalid)
    notes: list[str] = field(default_factory=list)
    accuracy: float | None = None     # compare mode: share of labelled points predicted right


@dataclass
class Scene:
    """What to draw, independent of the backend: panels' points/colours/titles and a legend."""

    points: np.ndarray
    panel_colors: list[np.ndarray]
    panel_titles: list[str]
    legend: list[tuple[str, np.ndarray]]
    view: str
    notes: list[str]
    accuracy: float | None = None


def cloud_field(cloud, name: str) -> np.ndarray:
    """A per-point field of a PointCloud by name; "label" (or a reader's other names for that
    column: labels, class, scalar_label, scalar_class) is the ground-truth `labels` array."""
    if name in LABEL_ALIASES and getattr(cloud, "labels", None) is not None:
        return cloud.labels
    fields = getattr(cloud, "fields", {}) or {}
    if name in fields:
        return fields[name]
    have = (["label"] if getattr(cloud, "labels", None) is not None else []) + sorted(fields)
    src = getattr(cloud, "source", "") or "the cloud"
    raise InputError(f"{src} has no per-point field {name!r} (fields: {', '.join(have) or 'none'})")


def _labels(cloud, value, n: int, what: str) -> np.ndarray | None:
    if value is None:
        return None
    arr = cloud_field(cloud, value) if isinstance(value, str) else np.asarray(value)
    arr = pal.as_class_ids(arr, what)
    if arr.shape[0] != n:
        raise InputError(f"{what} have {arr.shape[0]} entries for {n} points")
    return arr


def prepare_scene(cloud, *, colors=None, color_by: str = "auto", labels=None, compare=None,
                  palette: str | np.ndarray = "auto", class_names: list[str] | None = None,
                  view: str = "auto", up: str = "z", remove_ceiling: bool | None = None,
                  legend=None) -> Scene:
    """Resolve colours, palette, view, ceiling and legend for a PointCloud or an (N, 3) array.

    labels / compare: per-point class ids (arrays) or field names of `cloud`; `compare` is the
    prediction drawn beside `labels` (the ground truth) with wrong points red.
    """
    points = np.asarray(getattr(cloud, "points", cloud), np.float64)  # float32 after centring
    if points.ndim != 2 or points.shape[1] != 3:
        raise InputError(f"points must be (N, 3), got {points.shape}")
    n = len(points)
    if color_by not in COLOR_MODES:
        raise InputError(f"unknown colour mode {color_by!r} (choose from {', '.join(COLOR_MODES)})")
    if up not in ("z", "y"):
        raise InputError(f"up axis must be z or y, got {up!r}")
    if compare is not None and labels is None:
        labels = "label"
    truth = _labels(cloud, labels, n, "labels")
    pred = _labels(cloud, compare, n, "predictions")
    rgb = colors if colors is not None else getattr(cloud, "colors", None)
    if pred is not None and color_by not in ("auto", "class"):
        raise InputError(f"comparing a prediction colours by class, not by {color_by}")
    if color_by == "auto":
        color_by = "class" if truth is not None else "rgb" if rgb is not None else "height"
    if color_by == "class" and truth is None:
        truth = _labels(cloud, "label", n, "labels")
    if color_by == "rgb":
        if rgb is None:
            raise InputError("the cloud has no colours; colour by height or class instead")
        rgb = np.asarray(rgb, np.float32)
        if rgb.shape != (n, 3):
            raise InputError(f"colours must be ({n}, 3), got {rgb.shape}")
        if rgb.max(initial=0) > 1.0:  # 0–255 colours
            rgb = rgb / 255.0

    notes = []
    keep = np.all(np.isfinite(points), axis=1)
    if not keep.all():
        notes.append(f"dropped {int((~keep).sum())} points with non-finite coordinates")
    if up == "y":
        points = y_up_to_z_up(points)
    class_ids = [a for a in (truth, pred) if a is not None]
    n_classes = max((int(a.max()) + 1 for a in class_ids if a.size), default=0)
    if isinstance(palette, str) and palette == "auto":
        palette = pal.choose_palette(n_classes, resolve_view(view, points[keep]) == "room")
    view = resolve_view(view, points[keep], palette if isinstance(palette, str) else None)
    accuracy = None
    if pred is not None:  # over every valid point, before the ceiling leaves the picture
        t, p = truth[keep], pred[keep]
        labelled = int((t >= 0).sum())
        accuracy = float(((t == p) & (t >= 0)).sum() / labelled) if labelled else None
    if view == "room" and remove_ceiling is not False:
        s3dis = isinstance(palette, str) and palette == "s3dis"
        roof = np.zeros(n, bool)
        kept_truth = None if truth is None else truth[keep]
        roof[keep] = ~ceiling_mask(points[keep], kept_truth, s3dis=s3dis)
        if roof.any() and (keep & ~roof).any():
            keep &= ~roof
            notes.append(f"removed the ceiling ({int(roof.sum())} points) to look into the room")
    if not keep.any():
        raise InputError("nothing to render: the cloud has no valid points")

    pts = points[keep]
    if color_by == "class":
        t = truth[keep]
        panels = [pal.class_colors(t, palette, n_classes)]
        titles = ["ground truth" if pred is not None else ""]
        auto_legend = pal.class_legend(np.concatenate(class_ids)[np.tile(keep, len(class_ids))],
                                       palette, n_classes, class_names)
        if pred is not None:
            top = int(max(t.max(initial=-1), pred[keep].max(initial=-1))) + 1
            wrong_rgb, wrong_name = pal.error_color(palette, max(top, n_classes or 0))
            panels.append(pal.error_colors(t, pred[keep], palette, n_classes)[0])
            titles.append(f"prediction, wrong in {wrong_name}"
                          + (f" (accuracy {100 * accuracy:.1f}%)" if accuracy is not None else ""))
            auto_legend.append(("wrong", wrong_rgb))
    elif color_by == "height":
        c, (lo, hi) = pal.height_colors(pts)
        panels, titles = [c], [""]
        auto_legend = [(f"z {lo:.2f}", pal.colormap_color(0.0)),
                       (f"z {hi:.2f}", pal.colormap_color(1.0))]
    else:
        panels, titles, auto_legend = [rgb[keep]], [""], []
    if legend is None or legend is True:
        legend = auto_legend
    return Scene(pts, panels, titles, list(legend or []), view, notes, accuracy)


def _legend_rows(n_entries: int, width: int) -> tuple[int, int]:
    ncol = max(1, min(n_entries, width // 150))
    return ncol, math.ceil(min(n_entries, MAX_LEGEND) / ncol)


def _layout(size, n_panels, title, panel_titles, legend):
    """Pixel heights of the title band, panel-title band, legend band, and the panel size."""
    w, h = size
    title_h = 34 if title else 0
    sub_h = 24 if any(panel_titles) else 0
    legend_h = (_legend_rows(len(legend), w)[1] * 20 + 14) if legend else 0
    pw, ph = w // n_panels, h - title_h - sub_h - legend_h
    if pw < 32 or ph < 32:
        raise InputError(f"image size {w}x{h} is too small for {n_panels} panel(s) with "
                         "title and legend")
    return title_h, sub_h, legend_h, pw, ph


def compose(images: list[np.ndarray], out_png, size, title, panel_titles, legend) -> Path:
    """Lay panels side by side with titles and a legend on one figure of exactly `size` pixels."""
    # lazy: matplotlib takes ≈0.4 s to import, and segment/classify use viz without drawing
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    w, h = size
    title_h, sub_h, legend_h, pw, ph = _layout(size, len(images), title, panel_titles, legend)
    dpi = 100
    fig = Figure(figsize=(w / dpi, h / dpi), dpi=dpi, facecolor=BACKGROUND)
    FigureCanvasAgg(fig)
    x0 = (w - pw * len(images)) // 2
    for i, (img, sub) in enumerate(zip(images, panel_titles)):
        ax = fig.add_axes(((x0 + i * pw) / w, legend_h / h, pw / w, ph / h))
        ax.imshow(img, interpolation="nearest")
        ax.set_axis_off()
        if sub:
            fig.text((x0 + (i + 0.5) * pw) / w, (legend_h + ph + sub_h / 2) / h, sub,
                     ha="center", va="center", fontsize=10)
    if title:
        fig.text(0.5, 1 - title_h / 2 / h, title, ha="center", va="center", fontsize=13)
    if legend:
        entries = legend
        if len(legend) > MAX_LEGEND:
            rest = len(legend) - MAX_LEGEND + 1
            entries = legend[:MAX_LEGEND - 1] + [(f"… {rest} more", np.full(3, 0.5))]
        ncol, _ = _legend_rows(len(entries), w)
        handles = [Patch(facecolor=np.clip(c, 0, 1), edgecolor="0.4", label=name)
                   for name, c in entries]
        fig.legend(handles=handles, loc="lower center", ncol=ncol, frameon=False, fontsize=9,
                   bbox_to_anchor=(0.5, 2 / h), handlelength=1.2, columnspacing=1.2)
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png", facecolor=BACKGROUND)
    return out_png


def render_png(cloud, out_png, *, colors=None, color_by: str = "auto", labels=None, compare=None,
               palette: str | np.ndarray = "auto", class_names: list[str] | None = None,
               view: str = "auto", up: str = "z", remove_ceiling: bool | None = None,
               size: tuple[int, int] | None = None, title: str | None = None, legend=None,
               backend: str | None = None, point_size: float | None = None,
               max_points: int = MATPLOTLIB_MAX_POINTS, timeout: float = 90.0,
               seed: int = 0) -> RenderResult:
    """Render a PointCloud or (N, 3) points to `out_png` headless; returns which backend drew it.

    color_by: "auto" (class if labels, else RGB if present, else height) | "rgb" | "height" |
    "class". labels/compare: class ids or field names; with `compare` the prediction is drawn
    beside the ground truth, wrong points red. palette: "auto" | "s3dis" | "modelnet40" |
    "parts" | "generic" | a (K, 3) array. view: "auto" | "room" (oblique, ceiling removed) |
    "object" (3/4 view). legend: None (automatic), False, or [(name, rgb), …]. size: (w, h) of
    the whole PNG; default 1280×960, or 1600×760 for two panels.
    backend: None/"auto" (fallback chain) or one of backends.BACKENDS, which forces it.
    """
    scene = prepare_scene(cloud, colors=colors, color_by=color_by, labels=labels, compare=compare,
                          palette=palette, class_names=class_names, view=view, up=up,
                          remove_ceiling=remove_ceiling, legend=legend)
    w, h = (int(v) for v in (size or DEFAULT_SIZES[len(scene.panel_colors)]))
    *_, pw, ph = _layout((w, h), len(scene.panel_colors), title, scene.panel_titles, scene.legend)
    points = normalized(scene.points)
    camera = fit_camera(points, scene.view, pw / ph)
    panels = [Panel(points, c, camera, t)
              for c, t in zip(scene.panel_colors, scene.panel_titles)]
    images, used, notes = render_panels(panels, pw, ph, backend=backend, point_size=point_size,
                                        max_points=max_points, timeout=timeout, seed=seed)
    path = compose(images, out_png, (w, h), title, scene.panel_titles, scene.legend)
    return RenderResult(path, used, len(scene.points), scene.notes + notes, scene.accuracy)
