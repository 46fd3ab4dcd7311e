"""Open3D rendering in a child process: `python render_worker.py JOB.npz OUT.npz`.

Why a separate process: Open3D's Filament renderer aborts the whole process (uncatchably) when
the Vulkan stack is broken, e.g. libvulkan1 without a driver. The parent (`backends.py`) treats
a non-zero exit, a missing OUT.npz or a blank image as failure and falls back. The script is
self-contained (numpy and open3d only) so the child starts fast and imports nothing else.

JOB.npz holds `meta` (a JSON string: backend "open3d" | "open3d-legacy", width, height,
point_size, background, and per panel a camera {eye, center, up, fov_deg, extrinsic}) and
the arrays `points_<i>`, `colors_<i>` (float32). OUT.npz gets `image_<i>` (H, W, 3) uint8 per
panel, written under a temporary name and renamed, so it exists only when every panel rendered.
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np


def _cloud(o3d, points, colors):
    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points.astype(np.float64)))
    pc.colors = o3d.utility.Vector3dVector(colors.astype(np.float64))
    return pc


def render_offscreen(meta: dict, panels: list) -> list[np.ndarray]:
    """Filament `OffscreenRenderer` (Vulkan/EGL headless). Post-processing is off so the
    image shows the exact palette colours (tone mapping would shift them)."""
    # lazy: open3d is optional (absent on the GPU machines) and loads GL/Vulkan libraries
    import open3d as o3d
    from open3d.visualization import rendering

    renderer = rendering.OffscreenRenderer(meta["width"], meta["height"])
    renderer.scene.set_background(list(meta["background"]) + [1.0])
    renderer.scene.view.set_post_processing(False)
    material = rendering.MaterialRecord()
    material.shader = "defaultUnlit"
    material.point_size = float(meta["point_size"])
    images = []
    for (points, colors), cam in zip(panels, meta["cameras"]):
        renderer.scene.clear_geometry()
        renderer.scene.add_geometry("cloud", _cloud(o3d, points, colors), material)
        renderer.setup_camera(cam["fov_deg"], cam["center"], cam["eye"], cam["up"])
        images.append(np.asarray(renderer.render_to_image())[..., :3].copy())
    return images


def render_legacy(meta: dict, panels: list) -> list[np.ndarray]:
    """Legacy `Visualizer(visible=False)`: GLFW, or EGL when there is no display."""
    # lazy: open3d is optional (absent on the GPU machines) and loads GL/Vulkan libraries
    import open3d as o3d

    w, h = meta["width"], meta["height"]
    vis = o3d.visualization.Visualizer()
    if not vis.create_window(width=w, height=h, visible=False):
        raise RuntimeError("Visualizer.create_window failed (no GL context)")
    images = []
    try:
        option = vis.get_render_option()
        option.point_size = float(meta["point_size"])
        option.background_color = np.asarray(meta["background"], np.float64)
        option.light_on = False
        for (points, colors), cam in zip(panels, meta["cameras"]):
            vis.clear_geometries()
            vis.add_geometry(_cloud(o3d, points, colors), reset_bounding_box=True)
            params = o3d.camera.PinholeCameraParameters()
            f = (h / 2) / np.tan(np.radians(cam["fov_deg"]) / 2)
            params.intrinsic = o3d.camera.PinholeCameraIntrinsic(w, h, f, f,
                                                                 w / 2 - 0.5, h / 2 - 0.5)
            params.extrinsic = np.asarray(cam["extrinsic"], np.float64)
            control = vis.get_view_control()
            if not control.convert_from_pinhole_camera_parameters(params, allow_arbitrary=True):
                raise RuntimeError("the legacy view control rejected the camera")
            vis.poll_events()
            vis.update_renderer()
            buf = np.asarray(vis.capture_screen_float_buffer(do_render=True))
            images.append((np.clip(buf, 0, 1) * 255).round().astype(np.uint8)[..., :3])
    finally:
        vis.destroy_window()
    return images


def main(argv: list[str]) -> int:
    job_path, out_path = argv
    job = np.load(job_path)
    meta = json.loads(str(job["meta"]))
    panels = [(job[f"points_{i}"], job[f"colors_{i}"]) for i in range(len(meta["cameras"]))]
    # lazy: open3d is optional (absent on the GPU machines) and loads GL/Vulkan libraries
    import open3d as o3d

    o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
    render = {"open3d": render_offscreen, "open3d-legacy": render_legacy}[meta["backend"]]
    images = render(meta, panels)
    tmp = out_path + ".part.npz"
    np.savez(tmp, **{f"image_{i}": img for i, img in enumerate(images)})
    os.replace(tmp, out_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
