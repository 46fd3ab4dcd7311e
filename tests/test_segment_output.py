"""What `segment` writes: every output format read back (ours, and laspy for LAS), the input's
colours and fields kept, pred/confidence/entropy against a hand-computed softmax of the same
logits, LAS inputs kept dimension by dimension, and refusals that write nothing."""
import numpy as np
import pytest
from conftest import tiny_model, tiny_room_checkpoint, write_rich_las

from apps.cli import main
from pointgcn.io import WRITERS, PointCloud, read_points, write_ply
from pointgcn.io.columns import labels_field
from pointgcn.models import build_model, save_checkpoint

laspy = pytest.importorskip("laspy")


@pytest.fixture(scope="module")
def seg_weights(tmp_path_factory):
    return tiny_room_checkpoint(tmp_path_factory.mktemp("w") / "seg.pt", 64, 1.0)


def room(n=300, seed=0):
    rng = np.random.default_rng(seed)
    pts = np.round(rng.random((n, 3)) * [2.0, 1.5, 2.0], 3).astype(np.float32)
    return PointCloud(pts, rng.random((n, 3)).astype(np.float32),
                      fields={"intensity": rng.integers(0, 4000, n),
                              "reflectance": rng.random(n).astype(np.float32)})


def segment(src, out, weights, *extra):
    return main(["segment", str(src), "--weights", str(weights), "--out", str(out),
                 "--no-harmonise", *extra])


def logits_of(monkeypatch):
    """Keep the logits segment computes, to check its fields against our own softmax."""
    import pointgcn.engine.inference as inference

    seen = {}
    real = inference.segment_cloud

    def spy(*a, **k):
        seen["logits"] = real(*a, **k)
        return seen["logits"]
    monkeypatch.setattr(inference, "segment_cloud", spy)
    return seen


def test_suffixes_are_the_writers():
    from apps.segment import OUT_SUFFIXES

    assert set(OUT_SUFFIXES) == set(WRITERS)


@pytest.mark.parametrize("suffix", [".ply", ".las", ".laz", ".npy", ".npz", ".txt"])
def test_every_format_round_trips(seg_weights, tmp_path, monkeypatch, capsys, suffix):
    cloud = room()
    write_ply(tmp_path / "in.ply", cloud)
    seen = logits_of(monkeypatch)
    out = tmp_path / f"out{suffix}"
    assert segment(tmp_path / "in.ply", out, seg_weights) == 0
    back = read_points(out)
    assert len(back) == len(cloud)
    np.testing.assert_allclose(back.points, cloud.points, atol=1e-6)  # order and place kept
    np.testing.assert_allclose(back.colors, cloud.colors, atol=0.5 / 255 + 1e-6)  # its own
    np.testing.assert_array_equal(back.fields["intensity"], cloud.fields["intensity"])
    np.testing.assert_allclose(back.fields["reflectance"], cloud.fields["reflectance"],
                               rtol=1e-6)
    z = seen["logits"].astype(np.float64)  # hand-computed softmax of the same logits
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    np.testing.assert_array_equal(back.fields["pred"], p.argmax(1))
    np.testing.assert_allclose(back.fields["confidence"], p.max(1), atol=1e-6)
    np.testing.assert_allclose(back.fields["entropy"], -(p * np.log(p)).sum(1), atol=1e-5)
    if suffix in (".las", ".laz"):
        las = laspy.read(str(out))
        assert las.header.version == "1.4" and las.point_format.id == 7  # colours → RGB
        assert np.allclose(las.header.scales, 0.001)  # the input has 3 decimals
        assert "scale 0.001 (the coordinates have 3 decimals)" in capsys.readouterr().out
        np.testing.assert_array_equal(las.intensity, cloud.fields["intensity"])  # its own dim
        assert {"pred", "confidence", "entropy", "reflectance"} <= set(
            las.point_format.extra_dimension_names)
        np.testing.assert_array_equal(np.asarray(las.pred), p.argmax(1))


def test_class_colours_and_min_confidence(seg_weights, tmp_path, monkeypatch, capsys):
    from pointgcn.viz.palettes import class_colors

    cloud = room()
    write_ply(tmp_path / "in.ply", cloud)
    seen = logits_of(monkeypatch)
    assert segment(tmp_path / "in.ply", tmp_path / "o.ply", seg_weights) == 0
    cut = float(np.round(np.median(read_points(tmp_path / "o.ply").fields["confidence"]), 4))
    assert segment(tmp_path / "in.ply", tmp_path / "o2.ply", seg_weights, "--colors", "class",
                   "--min-confidence", str(cut)) == 0
    back = read_points(tmp_path / "o2.ply")
    z = seen["logits"].astype(np.float64)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    low = p.max(1) < cut
    assert 0 < low.sum() < len(low)  # the median splits this tiny model's points
    want = np.where(low, -1, p.argmax(1))
    np.testing.assert_array_equal(back.fields["pred"], want)
    assert f"{int(low.sum())} points below confidence {cut:g}: pred -1" in capsys.readouterr().out
    np.testing.assert_allclose(back.colors, class_colors(want, "s3dis", 13), atol=0.5 / 255)


def _las_input(path, version, point_format, n=200, seed=0):
    rng = np.random.default_rng(seed)
    xyz = np.round(rng.random((n, 3)) * [3.0, 2.0, 2.5], 4) + [654321.0, 5432100.0, 300.0]
    return write_rich_las(path, version, point_format, xyz, 0.0001, rng)


@pytest.mark.parametrize("version, point_format", [("1.2", 3), ("1.4", 6), ("1.4", 7)])
@pytest.mark.parametrize("suffix", [".las", ".laz"])
def test_las_round_trip_keeps_every_dimension(seg_weights, tmp_path, monkeypatch, version,
                                              point_format, suffix):
    src = tmp_path / f"tile{suffix}"
    orig = _las_input(src, version, point_format)
    seen = logits_of(monkeypatch)
    out = tmp_path / f"pred{suffix}"
    assert segment(src, out, seg_weights) == 0
    got = laspy.read(str(out))
    assert got.header.version == orig.header.version
    assert got.point_format.id == point_format
    np.testing.assert_array_equal(got.header.scales, orig.header.scales)
    np.testing.assert_array_equal(got.header.offsets, orig.header.offsets)
    assert [(v.user_id, v.record_id, v.record_data) for v in got.header.vlrs
            if v.user_id == "survey"] == [("survey", 7, b"EPSG:32632")]
    for name in orig.point_format.dimension_names:  # byte for byte, prediction field aside
        if name != "classification":
            np.testing.assert_array_equal(np.asarray(got.points[name]),
                                          np.asarray(orig.points[name]), err_msg=name)
    np.testing.assert_array_equal(got.points.array["X"], orig.points.array["X"])
    np.testing.assert_array_equal(got.classification, seen["logits"].argmax(1))
    assert {"confidence", "entropy"} <= set(got.point_format.extra_dimension_names)
    assert "pred" not in set(got.point_format.extra_dimension_names)  # it is classification
    # --las-field pred: classification untouched too, pred as extra bytes
    out2 = tmp_path / f"pred2{suffix}"
    assert segment(src, out2, seg_weights, "--las-field", "pred") == 0
    got = laspy.read(str(out2))
    np.testing.assert_array_equal(got.classification, orig.classification)
    np.testing.assert_array_equal(np.asarray(got.pred), seen["logits"].argmax(1))


def test_las_refusals_before_work(seg_weights, tmp_path, capsys):
    src = tmp_path / "tile.las"
    _las_input(src, "1.2", 3)
    cfg = {"data": {"dataset": "s3dis", "n_points": 64, "block": 1.0, "stride": 1.0},
           "model": tiny_model(in_channels=9, n_classes=40)}
    save_checkpoint(tmp_path / "wide.pt", build_model(cfg).eval(), cfg,
                    meta={"class_names": [f"c{i}" for i in range(40)]})
    for argv, message in (
            ((src, tmp_path / "o.las", tmp_path / "wide.pt"), "holds 0–31: add --las-field pred"),
            ((src, tmp_path / "o.las", seg_weights, "--min-confidence", "0.3"),
             "LAS classification cannot hold"),
            ((src, tmp_path / "o.ply", seg_weights, "--las-field", "pred"), "applies to .las"),
            ((src, tmp_path / "o.ply", seg_weights, "--min-confidence", "2"), "must lie in 0–1"),
            ((tmp_path / "tile.las", tmp_path / "o.foo", seg_weights), "must name a .ply or")):
        assert segment(*argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tile.las", "wide.pt"]


def test_colourless_input_gets_class_colours_unless_told(seg_weights, tmp_path, capsys):
    cloud = room()
    cloud.colors = None
    write_ply(tmp_path / "grey.ply", cloud)
    assert segment(tmp_path / "grey.ply", tmp_path / "o.npz", seg_weights) == 0
    assert read_points(tmp_path / "o.npz").colors is not None
    assert segment(tmp_path / "grey.ply", tmp_path / "o2.npz", seg_weights,
                   "--colors", "input") == 2
    assert "has no colours" in capsys.readouterr().err


def test_labels_multi_column_field_refused_before_work(tmp_path):
    cloud = PointCloud(np.zeros((4, 3), np.float32), fields={"multi": np.zeros((4, 2))},
                       source="in.npz")
    with pytest.raises(Exception, match="'multi' has 2 values per point; labels need one"):
        labels_field(cloud, "multi")


def test_labels_by_the_name_the_file_gave(tmp_path):
    """`--labels label` is a column named label, never LAS `classification` or a `class`."""
    las = laspy.LasData(laspy.LasHeader(point_format=1, version="1.2"))
    las.x, las.y, las.z = np.arange(5.0), np.zeros(5), np.zeros(5)
    las.classification = [2, 2, 6, 6, 2]
    las.write(str(tmp_path / "a.las"))
    cloud = read_points(tmp_path / "a.las")
    np.testing.assert_array_equal(labels_field(cloud, "classification"), [2, 2, 6, 6, 2])
    with pytest.raises(Exception, match="no field 'label' .*it has: classification"):
        labels_field(cloud, "label")
    (tmp_path / "c.txt").write_text("x y z class\n0 0 0 1\n1 0 0 2\n")
    cloud = read_points(tmp_path / "c.txt")
    assert labels_field(cloud, "class").tolist() == [1, 2]
    with pytest.raises(Exception, match="no field 'label'"):
        labels_field(cloud, "label")
    np.savez(tmp_path / "l.npz", points=np.zeros((2, 3)), labels=[3, 4])
    assert labels_field(read_points(tmp_path / "l.npz"), "label").tolist() == [3, 4]


def test_segment_labels_multi_column_exit_2_nothing_written(seg_weights, tmp_path, capsys):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "in.npz", points=rng.random((100, 3)).astype(np.float32),
             colors=rng.random((100, 3)).astype(np.float32), multi=np.zeros((100, 2), int))
    assert segment(tmp_path / "in.npz", tmp_path / "o.ply", seg_weights,
                   "--labels", "multi") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "labels need one" in err[0]
    assert not (tmp_path / "o.ply").exists()


def test_fields_named_as_las_dimensions(tmp_path):
    """A non-LAS cloud's `intensity` goes into LAS's own; a `classification` field that the
    predictions take the place of, and one that does not fit, become extra bytes."""
    from pointgcn.io import write_points

    n = 6
    cloud = PointCloud(np.arange(3 * n, dtype=np.float32).reshape(n, 3),
                       fields={"Intensity": np.arange(n) * 1000, "classification": np.arange(n),
                               "user_data": np.arange(n) * 100, "pred": np.arange(n) % 3})
    notes = write_points(tmp_path / "o.las", cloud, classification="pred")
    las = laspy.read(str(tmp_path / "o.las"))
    np.testing.assert_array_equal(las.intensity, np.arange(n) * 1000)
    np.testing.assert_array_equal(las.classification, np.arange(n) % 3)
    np.testing.assert_array_equal(las.classification_field, np.arange(n))
    np.testing.assert_array_equal(las.user_data_field, np.arange(n) * 100)  # 500 > 255
    assert "scale 1 (the coordinates have 0 decimals)" in notes[0]
    np.testing.assert_array_equal(las.x, np.arange(0, 3 * n, 3))


def test_georeferenced_text_to_las_and_txt_keeps_every_digit(seg_weights, tmp_path, capsys):
    """UTM coordinates with mm decimals: LAS gets scale 0.001 and the exact values; the text
    output prints the same digits the input had."""
    rng = np.random.default_rng(1)
    xyz = np.round(rng.random((300, 3)) * [3.0, 2.0, 2.5] + [500000.0, 4000000.0, 90.0], 3)
    rows = [f"{x:.3f} {y:.3f} {z:.3f} 10 20 30" for x, y, z in xyz]
    (tmp_path / "scan.txt").write_text("x y z r g b\n" + "\n".join(rows) + "\n")
    assert segment(tmp_path / "scan.txt", tmp_path / "o.las", seg_weights) == 0
    las = laspy.read(str(tmp_path / "o.las"))
    np.testing.assert_array_equal(las.header.scales, [0.001] * 3)
    np.testing.assert_allclose(np.stack([las.x, las.y, las.z], 1), xyz, rtol=0, atol=1e-9)
    rgb = np.stack([las.red, las.green, las.blue], 1)
    assert (rgb == np.round(np.array([10, 20, 30]) / 255 * 65535)).all()  # 8 → 16 bits
    assert segment(tmp_path / "scan.txt", tmp_path / "o.txt", seg_weights) == 0
    lines = (tmp_path / "o.txt").read_text().splitlines()
    assert lines[0].split()[:6] == ["x", "y", "z", "red", "green", "blue"]
    assert [line.split()[:6] for line in lines[1:]] == [r.split() for r in rows]


@pytest.mark.parametrize("suffix", [".ply", ".npy", ".npz", ".txt"])
def test_labels_keep_their_column_name(seg_weights, tmp_path, suffix):
    """A `class` column comes back as `class` (and is still read as labels)."""
    rng = np.random.default_rng(0)
    rows = [f"{x:.3f} {y:.3f} {z:.3f} 1 2 3 {c}" for (x, y, z), c in
            zip(rng.random((200, 3)) * 2, rng.integers(0, 13, 200))]
    (tmp_path / "in.txt").write_text("x y z r g b class\n" + "\n".join(rows) + "\n")
    out = tmp_path / f"o{suffix}"
    assert segment(tmp_path / "in.txt", out, seg_weights) == 0
    back = read_points(out)
    assert back.label_field == "class"
    np.testing.assert_array_equal(back.labels, [int(r.split()[-1]) for r in rows])


def test_las_class_colours_replace_rgb_only(seg_weights, tmp_path, monkeypatch):
    from pointgcn.viz.palettes import class_colors

    orig = _las_input(tmp_path / "tile.las", "1.4", 7)
    seen = logits_of(monkeypatch)
    assert segment(tmp_path / "tile.las", tmp_path / "o.las", seg_weights, "--colors",
                   "class") == 0
    got = laspy.read(str(tmp_path / "o.las"))
    want = np.round(class_colors(seen["logits"].argmax(1), "s3dis", 13).astype(np.float64)
                    * 65535)
    np.testing.assert_array_equal(np.stack([got.red, got.green, got.blue], 1), want)
    for name in ("intensity", "gps_time", "amplitude", "echo", "point_source_id"):
        np.testing.assert_array_equal(np.asarray(got.points[name]),
                                      np.asarray(orig.points[name]), err_msg=name)


def test_txt_output_replaces_clouds_not_notes(seg_weights, tmp_path, capsys):
    write_ply(tmp_path / "in.ply", room(100))
    notes = tmp_path / "notes.txt"
    notes.write_text("call the surveyor on monday\n")
    assert segment(tmp_path / "in.ply", notes, seg_weights) == 2
    assert "refusing to replace it" in capsys.readouterr().err
    assert notes.read_text() == "call the surveyor on monday\n"
    out = tmp_path / "o.txt"
    assert segment(tmp_path / "in.ply", out, seg_weights) == 0
    assert segment(tmp_path / "in.ply", out, seg_weights, "--colors", "class") == 0  # ours again
    (tmp_path / "table.txt").write_text("1 2 3\n4 5 6\n")
    assert segment(tmp_path / "in.ply", tmp_path / "table.txt", seg_weights) == 0


def test_las_writer_refusals_leave_no_file(tmp_path):
    from pointgcn.io import write_points

    pts = np.zeros((4, 3), np.float32)
    wide = {"wide": np.zeros((4, 5)), "pred": np.arange(4)}
    for cloud, message in ((PointCloud(pts, fields=wide), "1 to 3 values"),
                           (PointCloud(pts, fields={"p": np.arange(4)}), "no field 'pred'")):
        with pytest.raises(Exception, match=message):
            write_points(tmp_path / "o.las", cloud, classification="pred")
    with pytest.raises(Exception, match="points, .* 4"):  # the template is another cloud
        las = laspy.LasData(laspy.LasHeader(point_format=3, version="1.2"))
        las.x, las.y, las.z = np.zeros(4), np.zeros(4), np.zeros(4)
        las.write(str(tmp_path / "t.las"))
        write_points(tmp_path / "o.las", PointCloud(np.zeros((3, 3), np.float32)),
                     template=tmp_path / "t.las")
    moved = PointCloud(pts + 1)
    with pytest.raises(Exception, match="coordinates are not those of"):
        write_points(tmp_path / "o.las", moved, template=tmp_path / "t.las")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.las"]
