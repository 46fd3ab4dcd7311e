"""`pointgcn viz`: pictures from files, compare modes, curves, one-line errors; `show` headless."""
import json

import numpy as np
import pytest
from matplotlib.image import imread

from apps.cli import main
from pointgcn.io import PointCloud, write_ply
from pointgcn.viz import backends, show
from pointgcn.viz.palettes import ERROR_COLOR, S3DIS_COLORS, error_color


@pytest.fixture(autouse=True)
def _headless(monkeypatch):
    for var in ("DISPLAY", "WAYLAND_DISPLAY", backends.ENV_VAR):
        monkeypatch.delenv(var, raising=False)
    backends._FAILED.clear()


@pytest.fixture
def scan(tmp_path):
    """A small S3DIS-labelled room (floor, wall, table) with a `pred` field, 10% wrong."""
    rng = np.random.default_rng(0)
    floor = rng.uniform([0, 0, 0], [5, 4, 0.02], (800, 3))
    wall = rng.uniform([0, 3.98, 0], [5, 4, 2.8], (600, 3))
    table = rng.uniform([2, 1, 0.7], [3, 2, 0.75], (300, 3))
    pts = np.vstack([floor, wall, table]).astype(np.float32)
    labels = np.repeat([1, 2, 7], [800, 600, 300]).astype(np.int64)
    pred = labels.copy()
    wrong = rng.random(len(pred)) < 0.1
    pred[wrong] = np.where(labels[wrong] == 2, 1, 2)
    path = tmp_path / "scan.ply"
    write_ply(path, PointCloud(pts, labels=labels, fields={"pred": pred.astype(np.int32)}))
    return path, labels, pred


def run(*argv):
    return main(["viz", *map(str, argv)])


def has(img_path, rgb, tol=6, at_least=20):
    img = (imread(str(img_path))[..., :3] * 255).round()
    return int((np.abs(img - np.asarray(rgb) * 255).max(-1) <= tol).sum()) >= at_least


def test_png_coloured_by_a_field(scan, tmp_path, capsys):
    path, labels, _ = scan
    out = tmp_path / "out.png"
    assert run(path, "--labels", "pred", "--png", out, "--backend", "matplotlib",
               "--size", "400x300") == 0
    assert "backend matplotlib" in capsys.readouterr().out
    assert imread(str(out)).shape[:2] == (300, 400)
    assert has(out, S3DIS_COLORS[1]) and has(out, S3DIS_COLORS[7])


def test_compare_field_and_compare_file_agree(scan, tmp_path, capsys):
    path, labels, pred = scan
    other = tmp_path / "pred_only.ply"
    pts = PointCloud(np.zeros((len(pred), 3), np.float32), fields={"pred": pred.astype(np.int32)})
    write_ply(other, pts)
    expected = f"accuracy {100 * (pred == labels).mean():.1f}%"
    assert run(path, "--compare-field", "pred", "--png", tmp_path / "a.png",
               "--backend", "matplotlib", "--size", "600x300") == 0
    assert expected in capsys.readouterr().out
    wrong_rgb, name = error_color("s3dis", 13)
    assert name == "orange" and has(tmp_path / "a.png", wrong_rgb)  # chair is red in S3DIS
    assert not np.isclose(S3DIS_COLORS, wrong_rgb).all(axis=1).any()
    assert run(path, "--compare", other, "--png", tmp_path / "b.png", "--backend", "matplotlib",
               "--size", "600x300") == 0
    assert expected in capsys.readouterr().out


def test_no_display_and_no_png_writes_next_to_the_input(scan, capsys):
    path, *_ = scan
    assert run(path, "--backend", "matplotlib", "--size", "300x240") == 0
    out = capsys.readouterr().out
    assert "no display" in out and str(path.with_suffix(".png")) in out
    assert path.with_suffix(".png").exists()


def test_curves_from_a_run_folder(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    rows = [{"epoch": e, "split": s, "loss": 1 / e} for e in (1, 2, 3) for s in ("train", "val")]
    (run_dir / "metrics.jsonl").write_text("\n".join(map(json.dumps, rows)))
    assert run(run_dir, "--size", "640x480") == 0
    assert (run_dir / "curves.png").exists() and "training curves" in capsys.readouterr().out
    assert run(run_dir, "--labels", "pred") == 2


@pytest.mark.parametrize("case", ["garbage", "missing", "size", "field", "mismatch"])
def test_bad_input_exits_2_with_one_line(scan, tmp_path, capsys, case):
    path, *_ = scan
    garbage = tmp_path / "bad.ply"
    garbage.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 10\n"
                        b"property float x\n" + bytes(range(40)))
    small = tmp_path / "small.ply"
    write_ply(small, PointCloud(np.zeros((5, 3), np.float32)))
    argv = {"garbage": [garbage, "--png", tmp_path / "x.png"],
            "missing": [tmp_path / "nope.ply", "--png", tmp_path / "x.png"],
            "size": [path, "--size", "big", "--png", tmp_path / "x.png"],
            "field": [path, "--labels", "intensity", "--png", tmp_path / "x.png"],
            "mismatch": [path, "--compare", small, "--png", tmp_path / "x.png"]}[case]
    assert run(*argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert not (tmp_path / "x.png").exists()


def test_show_without_display_writes_a_png_and_says_where(tmp_path):
    pts = np.random.default_rng(0).uniform(0, 1, (500, 3)).astype(np.float32)
    result = show(pts, png=tmp_path / "v.png", backend="matplotlib", size=(300, 240))
    assert not result.window and result.png.path == tmp_path / "v.png"
    assert "no display" in result.message and str(tmp_path / "v.png") in result.message
    assert (tmp_path / "v.png").exists()


def test_display_detection_connects_to_the_server(monkeypatch):
    import socket

    from pointgcn.viz import interactive

    monkeypatch.setattr(interactive.sys, "platform", "linux")
    monkeypatch.setenv("DISPLAY", ":97")  # no X server with that number here
    assert not interactive.has_display()
    server = socket.socket()
    for number in range(40, 90):  # an X11-over-TCP display number with a free port
        try:
            server.bind(("127.0.0.1", 6000 + number))
            break
        except OSError:
            continue
    server.listen(1)
    with server:
        monkeypatch.setenv("DISPLAY", f"127.0.0.1:{number}.0")
        assert interactive.has_display()
    assert not interactive.has_display()  # closed again


class _FakeOpen3D:
    """Just enough of open3d for `show` to build a window; records what it was given."""

    def __init__(self):
        fake = self
        self.clouds, self.ran = [], False

        class Vis:
            def create_window(self, **kw):
                return True

            def add_geometry(self, geometry):
                fake.clouds.append(geometry)

            def get_render_option(self):
                return type("Option", (), {})()

            def run(self):
                fake.ran = True

            def destroy_window(self):
                pass

        class Cloud:
            def __init__(self, points):
                self.points = np.asarray(points)

        self.geometry = type("geometry", (), {"PointCloud": Cloud})
        self.utility = type("utility", (), {"Vector3dVector": staticmethod(np.asarray)})
        self.visualization = type("visualization", (), {"Visualizer": Vis})


def test_show_with_a_display_puts_prediction_beside_truth(monkeypatch):
    import sys

    from pointgcn.viz import interactive

    fake = _FakeOpen3D()
    monkeypatch.setitem(sys.modules, "open3d", fake)
    monkeypatch.setattr(interactive, "has_display", lambda: True)
    monkeypatch.setattr(interactive, "open3d_installed", lambda: True)
    pts = np.random.default_rng(0).uniform(0, 1, (200, 3)).astype(np.float32)
    truth = (pts[:, 0] > 0.5).astype(int)
    pred = np.where(pts[:, 1] > 0.9, 1 - truth, truth)
    result = show(pts, labels=truth, compare=pred, palette="generic")
    assert result.window and fake.ran and "wrong" in result.message
    left, right = fake.clouds
    assert np.allclose(left.points, pts)
    assert np.allclose(right.points - pts, [1.2 * np.ptp(pts[:, 0]), 0, 0], atol=1e-5)
    wrong = (truth != pred)
    assert np.array_equal(np.all(right.colors == ERROR_COLOR, axis=1), wrong)


def test_huge_clouds_are_shown_subsampled(scan, tmp_path, capsys):
    path, labels, pred = scan
    assert run(path, "--compare-field", "pred", "--png", tmp_path / "s.png", "--backend",
               "matplotlib", "--size", "300x200", "--max-points", "100") == 0
    out = capsys.readouterr().out
    assert f"showing 100 of {len(labels):,} points" in out and (tmp_path / "s.png").is_file()
