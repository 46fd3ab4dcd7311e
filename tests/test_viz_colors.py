"""Palettes, per-point colouring, compare colours, ceiling removal and the default camera."""
import numpy as np
import pytest
from matplotlib import colormaps

from pointgcn.data.classes import MODELNET40_CLASSES, S3DIS_CLASSES
from pointgcn.errors import InputError
from pointgcn.io import PointCloud
from pointgcn.viz.camera import (ceiling_mask, fit_camera, is_room, normalized, resolve_view,
                                 y_up_to_z_up)
from pointgcn.viz.palettes import (ERROR_COLOR, UNLABELLED_COLOR, class_colors, class_legend,
                                   distinct_colors, error_colors, height_colors, palette_colors,
                                   palette_names)
from pointgcn.viz.render import cloud_field, prepare_scene


def test_s3dis_palette_follows_the_class_order():
    table = palette_colors("s3dis")
    assert table.shape == (len(S3DIS_CLASSES), 3)
    named = dict(zip(S3DIS_CLASSES, np.round(table * 255).astype(int).tolist()))
    assert named["ceiling"] == [0, 255, 0] and named["floor"] == [0, 0, 255]
    assert named["chair"] == [255, 0, 0] and named["clutter"] == [50, 50, 50]
    assert len({tuple(c) for c in named.values()}) == len(S3DIS_CLASSES)


def test_distinct_colors_are_separated_and_prefix_stable():
    big = distinct_colors(60)
    d = np.linalg.norm(big[:, None] - big[None], axis=-1) + np.eye(60) * 9
    assert d.min() > 0.2
    assert np.array_equal(distinct_colors(13), big[:13])
    assert palette_colors("modelnet40").shape == (len(MODELNET40_CLASSES), 3)
    assert palette_names("modelnet40", 40)[8] == "chair"


def test_class_colors_maps_ids_and_handles_unlabelled_and_float_labels():
    labels = np.array([0, 3, -1, 3, 1])
    got = class_colors(labels.astype(np.float32), "generic", 4)
    table = distinct_colors(4)
    assert np.array_equal(got[[0, 1, 3, 4]], table[[0, 3, 3, 1]])
    assert np.array_equal(got[2], UNLABELLED_COLOR)
    parts = class_colors(np.array([0, 1]), "parts")
    assert np.array_equal(parts[0], UNLABELLED_COLOR)  # PartNet "other"
    with pytest.raises(InputError, match="out of range"):
        class_colors(np.array([13]), "s3dis")
    with pytest.raises(InputError, match="not integer class ids"):
        class_colors(np.array([0.5, 1.0]))


def test_height_colors_follow_the_colormap_along_z():
    pts = np.zeros((101, 3), np.float32)
    pts[:, 2] = np.linspace(0, 5, 101)
    colors, (lo, hi) = height_colors(pts)
    assert lo == pytest.approx(0.05) and hi == pytest.approx(4.95)
    assert np.allclose(colors[0], colormaps["viridis"](0.0)[:3])
    assert np.allclose(colors[50], colormaps["viridis"](0.5)[:3], atol=1e-6)
    assert np.allclose(colors[-1], colormaps["viridis"](1.0)[:3])


def test_error_colors_mark_exactly_the_wrong_points():
    truth = np.array([0, 1, 2, 2, -1, 1])
    pred = np.array([0, 2, 2, 0, 1, 1])
    colors, wrong = error_colors(truth, pred, "generic", 3)
    assert wrong.tolist() == [False, True, False, True, False, False]
    assert np.array_equal(colors[wrong], np.tile(ERROR_COLOR, (2, 1)))
    assert np.array_equal(colors[4], UNLABELLED_COLOR)
    dimmed = colors[[0, 2, 5]]
    full = distinct_colors(3)[[0, 2, 1]]
    assert np.allclose(dimmed, full * 0.35 + 0.65)  # correct ones: their class colour, dimmed
    legend = class_legend(np.concatenate([truth, pred]), "s3dis")
    assert [name for name, _ in legend] == ["ceiling", "floor", "wall"]


def test_ceiling_mask_uses_s3dis_labels_else_the_top_of_z():
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 3, (500, 3))
    labels = rng.integers(0, 13, 500)
    assert np.array_equal(ceiling_mask(pts, labels, s3dis=True), labels != 0)
    keep = ceiling_mask(pts)
    cut = pts[:, 2].max() - 0.1 * np.ptp(pts[:, 2])
    assert np.array_equal(keep, pts[:, 2] <= cut)


@pytest.mark.parametrize("view,aspect", [("room", 4 / 3), ("object", 1.0), ("object", 2.5)])
def test_fit_camera_keeps_every_point_in_frame_and_fills_it(view, aspect):
    rng = np.random.default_rng(1)
    scale = [6, 4, 3] if view == "room" else [0.6, 0.4, 1.0]
    pts = rng.uniform(0, 1, (3000, 3)) * scale
    cam = fit_camera(pts, view, aspect)
    h = 400
    w = int(round(h * aspect))
    uv, depth = cam.project(pts, w, h)
    assert (depth > 0).all()
    assert uv[:, 0].min() >= 0 and uv[:, 0].max() <= w
    assert uv[:, 1].min() >= 0 and uv[:, 1].max() <= h
    fill = max(np.ptp(uv[:, 0]) / w, np.ptp(uv[:, 1]) / h)
    assert fill > 0.85
    elev, _ = cam.elevation_azimuth()
    assert (elev > 40) if view == "room" else (15 < elev < 40)
    assert cam.eye[2] > pts[:, 2].max()  # looks from above


def test_view_detection_and_up_axis():
    assert is_room(np.array([[0, 0, 0], [6, 4, 3]], float))
    assert not is_room(np.array([[-1, -1, -1], [1, 1, 1]], float))
    assert resolve_view("auto", np.zeros((2, 3)), "s3dis") == "room"
    with pytest.raises(InputError):
        resolve_view("top", np.zeros((2, 3)))
    tall_in_y = np.array([[0, 0, 0], [0, 2, 0]], np.float32)
    assert np.allclose(y_up_to_z_up(tall_in_y)[1], [0, 0, 2])


def test_prepare_scene_reads_fields_and_picks_colours():
    rng = np.random.default_rng(2)
    pts = rng.uniform(0, 1, (100, 3)).astype(np.float32)
    cloud = PointCloud(pts, colors=np.full((100, 3), 0.5, np.float32), labels=np.arange(100) % 3,
                       fields={"pred": (np.arange(100) + 1) % 3})
    assert np.allclose(prepare_scene(cloud).panel_colors[0], 0.5)  # auto → RGB
    by_class = prepare_scene(cloud, labels="label", palette="generic")
    assert np.array_equal(by_class.panel_colors[0], distinct_colors(3)[cloud.labels])
    cmp = prepare_scene(cloud, compare="pred", palette="generic")
    assert len(cmp.panel_colors) == 2 and cmp.accuracy == 0.0
    assert np.array_equal(cloud_field(cloud, "class"), cloud.labels)
    with pytest.raises(InputError, match="no per-point field 'intensity'.*label, pred"):
        prepare_scene(cloud, labels="intensity")
    with pytest.raises(InputError, match="colours by class"):
        prepare_scene(cloud, compare="pred", color_by="height")


def test_normalized_keeps_the_shape_of_georeferenced_and_tiny_clouds():
    rng = np.random.default_rng(5)
    local = rng.uniform(0, [30, 20, 5], (400, 3))
    utm = local + [512345.0, 4123456.0, 80.0]  # float32 alone would round these to 0.25–0.5 m
    n = normalized(utm)
    assert n.dtype == np.float32
    assert np.linalg.norm(n.max(0) - n.min(0)) == pytest.approx(1.0, abs=1e-5)
    assert np.allclose(n.max(0), -n.min(0), atol=1e-6)
    expected = (local - (local.min(0) + local.max(0)) / 2) / np.linalg.norm(np.ptp(local, 0))
    assert np.abs(n - expected).max() < 1e-6
    single = normalized(np.array([[1.0, 2.0, 3.0]]))
    assert np.array_equal(single, np.zeros((1, 3), np.float32))
    cam = fit_camera(single, "object", 1.0)
    assert np.linalg.norm(cam.eye - cam.center) > 0.5  # beyond Open3D's 0.1 near plane


def test_compare_accuracy_counts_the_hidden_ceiling_and_nan_points_do_not_block_its_removal():
    rng = np.random.default_rng(6)
    pts = rng.uniform(0, [6, 4, 3], (400, 3))
    truth = np.where(pts[:, 2] > 2.7, 0, 1)        # ceiling above 2.7 m, floor/other below
    pred = truth.copy()
    pred[truth == 0] = 2                            # every ceiling point wrong
    pts[:5] = np.nan
    scene = prepare_scene(pts, labels=truth, compare=pred, palette="s3dis")
    finite = np.isfinite(pts).all(1)
    assert scene.accuracy == pytest.approx(((truth == pred) & finite).sum() / finite.sum())
    assert len(scene.points) == int((finite & (truth != 0)).sum())
    assert any("removed the ceiling" in n for n in scene.notes)
