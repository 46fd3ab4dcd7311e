"""Headless rendering: every backend available here draws the expected class colours; the
fallback chain survives an aborting / blank / missing Open3D; compare mode marks errors red."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from matplotlib.image import imread

from pointgcn.errors import InputError
from pointgcn.viz import backends, render_png
from pointgcn.viz.backends import BACKENDS, RenderError
from pointgcn.viz.palettes import S3DIS_COLORS, distinct_colors

FLOOR, WALL, TABLE, CHAIR, CEILING = 1, 2, 7, 8, 0
SIZE = (360, 280)


def room(n=3000, seed=0):
    """A 6 × 4 × 3 m box room with S3DIS labels: ceiling, floor, two walls, a table, a chair."""
    rng = np.random.default_rng(seed)
    boxes = [([0, 0, 0], [6, 4, 0.02], FLOOR, 0.3), ([0, 0, 2.98], [6, 4, 3], CEILING, 0.25),
             ([0, 0, 0], [0.02, 4, 3], WALL, 0.15), ([0, 3.98, 0], [6, 4, 3], WALL, 0.15),
             ([2, 1.5, 0.7], [3.5, 2.5, 0.75], TABLE, 0.1),
             ([1.2, 1.6, 0], [1.8, 2.4, 0.9], CHAIR, 0.05)]
    pts, labels = [], []
    for lo, hi, label, share in boxes:
        m = int(n * share)
        pts.append(rng.uniform(lo, hi, (m, 3)))
        labels.append(np.full(m, label))
    return np.vstack(pts).astype(np.float32), np.concatenate(labels)


def load(path):
    img = imread(str(path))
    return (img[..., :3] * 255).round().astype(np.int16)


def count_color(img, rgb, tol=6):
    target = np.round(np.asarray(rgb) * 255).astype(np.int16)
    return int((np.abs(img - target).max(-1) <= tol).sum())


@pytest.fixture(autouse=True)
def _clean_backend_state(monkeypatch):
    monkeypatch.delenv(backends.ENV_VAR, raising=False)
    backends._FAILED.clear()
    yield
    backends._FAILED.clear()


PROBES = {
    "open3d": """
        from open3d.visualization import rendering
        r = rendering.OffscreenRenderer(32, 32)
        r.render_to_image()""",
    "open3d-legacy": """
        import open3d as o3d
        v = o3d.visualization.Visualizer()
        assert v.create_window(width=32, height=32, visible=False)
        v.destroy_window()""",
}
_probed = {}


def backend_works(name, env=None):
    """Whether this machine can run `name` at all, judged by a minimal script of its own."""
    if name == "matplotlib":
        return True
    if not backends.open3d_installed():
        return False
    key = (name, tuple(sorted((env or {}).items())))
    if key not in _probed:
        try:
            proc = subprocess.run([sys.executable, "-c", textwrap.dedent(PROBES[name])],
                                  capture_output=True, timeout=60,
                                  env={**os.environ, **(env or {})})
            _probed[key] = proc.returncode == 0
        except subprocess.TimeoutExpired:
            _probed[key] = False
    return _probed[key]


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_available_backend_draws_the_class_colours(tmp_path, backend):
    if not backend_works(backend):
        pytest.skip(f"{backend} cannot render on this machine")
    pts, labels = room()
    out = tmp_path / f"{backend}.png"
    result = render_png(pts, out, labels=labels, size=SIZE, backend=backend, title="room")
    assert result.backend == backend
    img = load(out)
    assert img.shape == (SIZE[1], SIZE[0], 3)
    assert img.std() > 20
    for cls in (FLOOR, WALL, TABLE, CHAIR):
        assert count_color(img, S3DIS_COLORS[cls]) > 20, f"class {cls} missing in {backend} image"
    # rooms are shown without their ceiling (green in the S3DIS palette)
    assert count_color(img, S3DIS_COLORS[CEILING]) == 0
    assert result.points == int((labels != CEILING).sum())


def test_worker_abort_falls_back_to_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setattr(backends, "open3d_installed", lambda: True)
    monkeypatch.setattr(backends, "worker_command",
                        lambda job, out: [sys.executable, "-c", "import os; os.abort()"])
    pts, labels = room(1500)
    result = render_png(pts, tmp_path / "r.png", labels=labels, size=SIZE)
    assert result.backend == "matplotlib"
    failed = [n for n in result.notes if "SIGABRT" in n]
    assert [n.split(":")[0] for n in failed] == ["open3d", "open3d-legacy"]
    assert count_color(load(tmp_path / "r.png"), S3DIS_COLORS[FLOOR]) > 20
    # a backend that failed is skipped (and says so) for the rest of the process
    again = render_png(pts, tmp_path / "r2.png", labels=labels, size=SIZE)
    assert again.backend == "matplotlib" and any("skipped" in n for n in again.notes)


def test_a_really_broken_vulkan_stack_falls_back_to_egl(tmp_path, monkeypatch):
    """No Vulkan driver: Filament aborts the process (measured); the caller must survive."""
    broken = {"VK_ICD_FILENAMES": str(tmp_path / "no-such-driver.json")}
    if backend_works("open3d", broken) or not backend_works("open3d-legacy", broken):
        pytest.skip("needs Open3D whose OffscreenRenderer dies without Vulkan but EGL works")
    monkeypatch.setenv("VK_ICD_FILENAMES", broken["VK_ICD_FILENAMES"])
    pts, labels = room(1500)
    result = render_png(pts, tmp_path / "r.png", labels=labels, size=SIZE)
    assert result.backend == "open3d-legacy"
    assert any(n.startswith("open3d: failed (killed by SIGABRT") for n in result.notes)
    assert count_color(load(tmp_path / "r.png"), S3DIS_COLORS[TABLE]) > 20


def test_blank_open3d_image_counts_as_failure(tmp_path, monkeypatch):
    fake = tmp_path / "blank_worker.py"
    fake.write_text(textwrap.dedent("""
        import json, sys, numpy as np
        meta = json.loads(str(np.load(sys.argv[1])["meta"]))
        white = np.full((meta["height"], meta["width"], 3), 255, np.uint8)
        np.savez(sys.argv[2], **{f"image_{i}": white for i in range(len(meta["cameras"]))})
    """))
    monkeypatch.setattr(backends, "open3d_installed", lambda: True)
    monkeypatch.setattr(backends, "worker_command",
                        lambda job, out: [sys.executable, str(fake), str(job), str(out)])
    pts, labels = room(1500)
    result = render_png(pts, tmp_path / "r.png", labels=labels, size=SIZE)
    assert result.backend == "matplotlib"
    assert sum("blank" in n for n in result.notes) == 2
    assert backends._FAILED == {}  # a blank picture is about this scene: not remembered


def test_missing_open3d_falls_back(tmp_path, monkeypatch):
    monkeypatch.setattr(backends, "open3d_installed", lambda: False)
    result = render_png(*room(1000)[:1], tmp_path / "r.png", size=SIZE)
    assert result.backend == "matplotlib"
    assert any("not installed" in n for n in result.notes)


def test_env_var_forces_a_backend_without_trying_others(tmp_path, monkeypatch):
    monkeypatch.setenv(backends.ENV_VAR, "matplotlib")
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("spawned a worker"))
    result = render_png(room(1000)[0], tmp_path / "r.png", size=SIZE)
    assert result.backend == "matplotlib"
    assert not any("open3d" in n for n in result.notes)


def test_forced_backend_that_fails_is_an_error_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv(backends.ENV_VAR, "open3d")
    monkeypatch.setattr(backends, "open3d_installed", lambda: True)
    monkeypatch.setattr(backends, "worker_command",
                        lambda job, out: [sys.executable, "-c", "raise SystemExit(3)"])
    with pytest.raises(RenderError, match="open3d failed: exit code 3"):
        render_png(room(1000)[0], tmp_path / "r.png", size=SIZE)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(InputError, match="unknown render backend"):
        render_png(room(1000)[0], tmp_path / "r.png", backend="povray")


def test_matplotlib_subsamples_large_clouds_and_says_so(tmp_path):
    pts, labels = room(3000)
    result = render_png(pts, tmp_path / "r.png", labels=labels, size=SIZE, backend="matplotlib",
                        max_points=400)
    assert any(f"400 of {result.points}" in n for n in result.notes)


def test_compare_marks_wrong_points_red_only_in_the_prediction_panel(tmp_path):
    rng = np.random.default_rng(3)
    pts = rng.uniform(-1, 1, (2000, 3)).astype(np.float32)
    truth = (pts[:, 0] > 0).astype(np.int64) + (pts[:, 1] > 0)  # classes 0, 1, 2
    pred = truth.copy()
    wrong = rng.random(len(pred)) < 0.2
    pred[wrong] = (pred[wrong] + 1) % 3
    out = tmp_path / "cmp.png"
    # generic palette: tab10 blue/orange/green, so pure red can only be an error
    result = render_png(pts, out, labels=truth, compare=pred, size=(600, 300), palette="generic")
    assert result.accuracy == pytest.approx(1 - wrong.mean())
    img = load(out)
    half = img.shape[1] // 2
    assert count_color(img[:, half:], (1, 0, 0), tol=10) > 50
    assert count_color(img[:, :half], (1, 0, 0), tol=40) == 0
    assert count_color(img[:, :half], distinct_colors(3)[1]) > 50  # truth in full class colour


def test_bad_inputs_raise_input_errors(tmp_path):
    pts, labels = room(500)
    with pytest.raises(InputError, match="out of range for the s3dis palette"):
        render_png(pts, tmp_path / "r.png", labels=labels + 20, palette="s3dis")
    with pytest.raises(InputError, match="no colours"):
        render_png(pts, tmp_path / "r.png", color_by="rgb")
    with pytest.raises(InputError, match=r"\(N, 3\)"):
        render_png(pts[:, :2], tmp_path / "r.png")
    with pytest.raises(InputError, match="too small"):
        render_png(pts, tmp_path / "r.png", size=(40, 40), backend="matplotlib")
    assert list(tmp_path.iterdir()) == []
