"""Headless rendering backends and the fallback chain that picks one.

Order: "open3d" (Filament OffscreenRenderer), "open3d-legacy" (Visualizer(visible=False), EGL
without a display), "matplotlib" (Agg 3-D scatter, in-process). Both Open3D backends run in a
child process (`render_worker.py`): a broken GPU stack can abort Open3D uncatchably, which must
not take the caller down. A backend fails on a non-zero exit, a timeout, a missing result or a
blank image; the chain then moves on and records why in the notes. `backend=` or the environment
variable POINTGCN_RENDER_BACKEND forces one backend (no fallback: its failure is an error).
"""
from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from .camera import Camera

BACKENDS = ("open3d", "open3d-legacy", "matplotlib")
ENV_VAR = "POINTGCN_RENDER_BACKEND"
# Run as a script, not `-m pointgcn.viz…`: the child then imports only numpy and open3d, so it
# starts faster and cannot be broken by anything else in the package.
WORKER_SCRIPT = Path(__file__).with_name("render_worker.py")
BACKGROUND = (1.0, 1.0, 1.0)
MATPLOTLIB_MAX_POINTS = 60_000  # a 3-D scatter slows down sharply beyond this
_FAILED: dict[str, str] = {}    # backends that failed in this process: skipped by "auto"


class RenderError(InputError):
    """No backend could render the picture (or a forced one failed); says why for each."""


class BackendFailed(RuntimeError):
    """One backend could not render; the chain falls back to the next.

    `lasting`: the cause is the machine (crash, timeout, not installed), not this scene (a blank
    image), so later renders in this process skip the backend instead of paying for it again.
    """

    def __init__(self, message: str, lasting: bool = True):
        super().__init__(message)
        self.lasting = lasting


@dataclass
class Panel:
    """One picture in a row: the points, their colours and the camera looking at them."""

    points: np.ndarray  # (N, 3) float32
    colors: np.ndarray  # (N, 3) float32 in [0, 1]
    camera: Camera
    title: str = ""


def default_point_size(n_points: int, width: int, height: int) -> float:
    """Point size in pixels: big enough to close gaps in a small cloud, small for a dense one."""
    return float(np.clip(np.sqrt(0.2 * width * height / max(n_points, 1)), 1.5, 6.0))


def is_blank(image: np.ndarray, background=BACKGROUND, min_pixels: int = 10) -> bool:
    """True when fewer than `min_pixels` pixels differ from the background colour."""
    bg = np.round(np.asarray(background) * 255).astype(np.int16)
    differs = np.abs(image[..., :3].astype(np.int16) - bg).max(-1) > 8
    return int(differs.sum()) < min_pixels


def backend_order(backend: str | None = None) -> tuple[list[str], bool]:
    """(backends to try, forced?) from the argument, else POINTGCN_RENDER_BACKEND, else auto."""
    name = backend or os.environ.get(ENV_VAR) or "auto"
    if name == "auto":
        return list(BACKENDS), False
    if name not in BACKENDS:
        raise InputError(f"unknown render backend {name!r} (choose from auto, "
                         f"{', '.join(BACKENDS)}; also settable with {ENV_VAR})")
    return [name], True


def open3d_installed() -> bool:
    return importlib.util.find_spec("open3d") is not None


def worker_command(job: Path, out: Path) -> list[str]:
    """The child process command line (a function so tests can substitute a failing worker)."""
    return [sys.executable, str(WORKER_SCRIPT), str(job), str(out)]


def _exit_reason(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def render_open3d(name: str, panels: list[Panel], width: int, height: int, point_size: float,
                  timeout: float) -> list[np.ndarray]:
    """Render the panels with an Open3D backend in a child process; BackendFailed on any failure."""
    if not open3d_installed():
        raise BackendFailed("open3d is not installed")
    meta = {"backend": name, "width": width, "height": height, "point_size": point_size,
            "background": list(BACKGROUND),
            "cameras": [{"eye": p.camera.eye.tolist(), "center": p.camera.center.tolist(),
                         "up": p.camera.up.tolist(), "fov_deg": p.camera.fov_deg,
                         "extrinsic": p.camera.extrinsic().tolist()} for p in panels]}
    arrays = {}
    for i, p in enumerate(panels):
        arrays[f"points_{i}"] = np.ascontiguousarray(p.points, np.float32)
        arrays[f"colors_{i}"] = np.ascontiguousarray(p.colors, np.float32)
    with tempfile.TemporaryDirectory(prefix="pointgcn-render-") as tmp:
        job, out = Path(tmp) / "job.npz", Path(tmp) / "out.npz"
        np.savez(job, meta=json.dumps(meta), **arrays)
        try:
            proc = subprocess.run(worker_command(job, out), capture_output=True, text=True,
                                  errors="replace", timeout=timeout)
        except subprocess.TimeoutExpired:
            raise BackendFailed(f"timed out after {timeout:g} s") from None
        if proc.returncode != 0:
            lines = [ln for ln in (proc.stderr or "").strip().splitlines() if ln.strip()]
            last = f": {lines[-1][:200]}" if lines else ""
            raise BackendFailed(_exit_reason(proc.returncode) + last)
        if not out.exists():
            raise BackendFailed("the worker wrote no image")
        with np.load(out) as result:
            images = [result[f"image_{i}"] for i in range(len(panels)) if f"image_{i}" in result]
    if len(images) != len(panels):
        raise BackendFailed("the worker returned fewer images than panels")
    for img in images:
        if img.shape[:2] != (height, width):
            raise BackendFailed(f"image is {img.shape[1]}x{img.shape[0]}, "
                                f"expected {width}x{height}")
        if is_blank(img):
            raise BackendFailed("rendered a blank image", lasting=False)
    return images


def _fitting_zoom(ax, pts: np.ndarray, width: int, height: int, fill: float = 0.94) -> float:
    """The box zoom at which the projected points just fill the axes (mpl's default leaves a
    wide margin). Needs a drawn axes; zoom scales the projection about the axes centre, so
    one step suffices."""
    # lazy: matplotlib takes ≈0.4 s to import, and segment/classify use viz without drawing
    from mpl_toolkits.mplot3d import proj3d

    sample = pts[:: max(1, len(pts) // 20_000)]
    x, y, _ = proj3d.proj_transform(sample[:, 0], sample[:, 1], sample[:, 2], ax.get_proj())
    disp = ax.transData.transform(np.stack([x, y], 1))
    reach = max(np.abs(disp[:, 0] - width / 2).max() / (width / 2),
                np.abs(disp[:, 1] - height / 2).max() / (height / 2), 1e-6)
    return float(np.clip(fill / reach, 0.2, 5.0))


def render_matplotlib(panels: list[Panel], width: int, height: int, point_size: float | None,
                      max_points: int, seed: int) -> tuple[list[np.ndarray], list[str]]:
    """3-D scatter per panel on the Agg canvas; clouds above `max_points` are randomly subsampled
    (the same subset in every panel so side-by-side pictures stay comparable)."""
    # lazy: matplotlib takes ≈0.4 s to import, and segment/classify use viz without drawing
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    dpi = 100
    images, notes, picks = [], [], {}
    for p in panels:
        n = len(p.points)
        if n > max_points:
            if n not in picks:
                picks[n] = np.sort(np.random.default_rng(seed).choice(n, max_points, replace=False))
                notes.append(f"matplotlib: drew a random subsample of {max_points} of {n} points")
            idx = picks[n]
            pts, cols = p.points[idx], p.colors[idx]
        else:
            pts, cols = p.points, p.colors
        size_px = point_size or default_point_size(len(pts), width, height)
        fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi, facecolor=BACKGROUND)
        canvas = FigureCanvasAgg(fig)
        ax = fig.add_axes((0, 0, 1, 1), projection="3d", facecolor=BACKGROUND)
        ax.set_proj_type("persp", focal_length=1 / np.tan(np.radians(p.camera.fov_deg) / 2))
        lo, hi = pts.min(0), pts.max(0)
        span = np.maximum(hi - lo, 1e-3 * max(float((hi - lo).max()), 1e-3))
        ax.set_xlim(lo[0], lo[0] + span[0])
        ax.set_ylim(lo[1], lo[1] + span[1])
        ax.set_zlim(lo[2], lo[2] + span[2])
        elev, azim = p.camera.elevation_azimuth()
        ax.view_init(elev=elev, azim=azim)
        ax.set_axis_off()
        ax.set_box_aspect(tuple(span))  # equal aspect
        canvas.draw()  # an empty draw settles the projection the zoom fit measures
        ax.set_box_aspect(tuple(span), zoom=_fitting_zoom(ax, pts, width, height))
        ax.autoscale(enable=False)  # keep the fitted limits when the points arrive
        ax.scatter(pts[:, 0], pts[:, 1], pts[:, 2], c=np.clip(cols, 0, 1),
                   s=(size_px * 72 / dpi) ** 2, marker="o", linewidths=0, depthshade=False,
                   antialiased=False, clip_on=False)  # mpl 3-D axes are square; draw beyond them
        canvas.draw()
        images.append(np.asarray(canvas.buffer_rgba())[..., :3].copy())
    return images, notes


def render_panels(panels: list[Panel], width: int, height: int, *, backend: str | None = None,
                  point_size: float | None = None, max_points: int = MATPLOTLIB_MAX_POINTS,
                  timeout: float = 90.0, seed: int = 0) -> tuple[list[np.ndarray], str, list[str]]:
    """Render each panel at width×height with the first backend that works.

    Returns (images (H, W, 3) uint8, the backend that rendered, notes on fallbacks/subsampling).
    """
    order, forced = backend_order(backend)
    notes: list[str] = []
    n_max = max(len(p.points) for p in panels)
    for name in order:
        if not forced and name in _FAILED:
            notes.append(f"{name}: skipped (failed earlier in this process: {_FAILED[name]})")
            continue
        try:
            if name == "matplotlib":
                images, more = render_matplotlib(panels, width, height, point_size, max_points,
                                                 seed)
                notes += more
            else:
                size = point_size or default_point_size(n_max, width, height)
                images = render_open3d(name, panels, width, height, size, timeout)
            return images, name, notes
        except BackendFailed as e:
            if e.lasting:
                _FAILED[name] = str(e)
            notes.append(f"{name}: failed ({e})")
            if forced:
                raise RenderError(f"render backend {name} failed: {e}") from None
    raise RenderError("no render backend worked: " + "; ".join(notes))
