"""`show`: an interactive Open3D window when a display exists, else a PNG (and where it went).

The window runs in-process: with a display Open3D uses GLX/Cocoa rather than the headless
Vulkan path that can abort. "A display exists" means DISPLAY / WAYLAND_DISPLAY names a server
that accepts connections: with a dead DISPLAY, Open3D's Visualizer silently falls back to an
invisible EGL window and `run()` then waits forever (measured), so the server is checked first.
"""
from __future__ import annotations

import os
import socket
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .backends import open3d_installed
from .render import RenderResult, prepare_scene, render_png


@dataclass
class ShowResult:
    window: bool                        # True: an Open3D window was shown (and closed)
    png: RenderResult | None = None     # the fallback picture when there was no window
    message: str = ""


def _x11_reachable(display: str) -> bool:
    """Connect to the X server that DISPLAY ([host]:N[.screen]) names, as Xlib would."""
    host, _, rest = display.rpartition(":")
    try:
        number = int(rest.split(".")[0])
    except ValueError:
        return False
    if host in ("", "unix"):
        path = f"/tmp/.X11-unix/X{number}"
        targets = [path, "\0" + path] if sys.platform.startswith("linux") else [path]
        for target in targets:  # the file socket, or Linux's abstract one
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.settimeout(1.0)
                    s.connect(target)
                    return True
            except OSError:
                continue
        return False
    try:
        with socket.create_connection((host, 6000 + number), timeout=1.0):
            return True
    except OSError:
        return False


def has_display() -> bool:
    """True when a window can be shown: macOS/Windows, or a live Wayland / X11 server."""
    if sys.platform == "darwin" or sys.platform.startswith("win"):
        return True
    wayland = os.environ.get("WAYLAND_DISPLAY")
    if wayland:
        path = wayland if os.path.isabs(wayland) else os.path.join(
            os.environ.get("XDG_RUNTIME_DIR", ""), wayland)
        if os.path.exists(path):
            return True
    display = os.environ.get("DISPLAY")
    return bool(display) and _x11_reachable(display)


def _open_window(scene, title: str, size: tuple[int, int]) -> bool:
    """Panels side by side in one window (shifted along x by 1.2 × the scene width)."""
    # lazy: open3d is optional (absent on the GPU machines) and loads GL/Vulkan libraries
    import open3d as o3d

    vis = o3d.visualization.Visualizer()
    if not vis.create_window(window_name=title or "pointgcn", width=size[0], height=size[1]):
        return False
    try:
        width = float(np.ptp(scene.points[:, 0])) if len(scene.points) else 1.0
        for i, colors in enumerate(scene.panel_colors):
            pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(
                scene.points.astype(np.float64) + [i * 1.2 * width, 0.0, 0.0]))
            pc.colors = o3d.utility.Vector3dVector(np.clip(colors, 0, 1).astype(np.float64))
            vis.add_geometry(pc)
        vis.get_render_option().point_size = 3.0
        vis.run()
    finally:
        vis.destroy_window()
    return True


def show(cloud, *, png: str | Path | None = None, title: str | None = None,
         size: tuple[int, int] | None = None, **kwargs) -> ShowResult:
    """Open a window on `cloud` (same colour/compare options as `render_png`), or write a PNG.

    Without a display (or Open3D, or a window) the picture goes to `png`, default a file in the
    temporary directory; the result's message says where.
    """
    display = has_display()
    if display and open3d_installed():
        scene_keys = ("colors", "color_by", "labels", "compare", "palette", "class_names", "view",
                      "up", "remove_ceiling")
        scene_kw = {k: kwargs[k] for k in scene_keys if k in kwargs}
        scene = prepare_scene(cloud, **scene_kw)
        if _open_window(scene, title or "", size or (1280, 960)):
            legend = ", ".join(name for name, _ in scene.legend)
            return ShowResult(True, None,
                              "closed the window" + (f" (legend: {legend})" if legend else ""))
        reason = "could not open a window on this display"
    else:
        reason = ("no display (DISPLAY/WAYLAND_DISPLAY unset or unreachable)" if not display
                  else "open3d is not installed")
    if png is None:
        fd, png = tempfile.mkstemp(prefix="pointgcn-view-", suffix=".png")
        os.close(fd)
    result = render_png(cloud, png, title=title, size=size, **kwargs)
    return ShowResult(False, result, f"{reason}; wrote {result.path} with {result.backend}")
