"""What `segment --stream` writes: the file in-memory `segment` writes for the same input, in
every streamable format (compared byte for byte, and LAS dimension by dimension against the
input), a LAS output that survives SIGKILL + --resume, and refusals that write nothing."""
import numpy as np
import pytest
from conftest import tiny_room_checkpoint, write_rich_las
from test_streaming import kill_after_first_tile, scene

from apps.cli import main
from pointgcn.engine.streaming import work_folder
from pointgcn.io import PointCloud, read_points, write_ply

laspy = pytest.importorskip("laspy")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return tiny_room_checkpoint(tmp_path_factory.mktemp("w") / "seg.pt", 64, 0.5)


def same_las(a, b):
    """Two LAS/LAZ files hold the same header, VLRs and point records. laspy 2.7 writes an
    extra-bytes dimension's min/max statistics from the first point of each write call, so
    a file written in chunks differs from one written whole there only: those are left out."""
    a, b = laspy.read(str(a)), laspy.read(str(b))
    for key in ("version", "point_count", "scales", "offsets", "mins", "maxs",
                "number_of_points_by_return", "system_identifier", "generating_software"):
        assert np.array_equal(np.asarray(getattr(a.header, key)),
                              np.asarray(getattr(b.header, key))), key
    assert a.point_format == b.point_format
    vlrs = lambda las: [(v.user_id, v.record_id, v.description, v.record_data_bytes()  # noqa
                         if v.record_id != 4 else [(e.format_name(), e.data_type, e.options)
                                                   for e in v.extra_bytes_structs])
                        for v in las.header.vlrs]
    assert vlrs(a) == vlrs(b)
    assert a.points.array.tobytes() == b.points.array.tobytes()


def segment(src, out, weights, *extra, stream=True):
    argv = ["segment", str(src), "--weights", str(weights), "--out", str(out), "--no-harmonise",
            "--threads", "1", *extra]
    return main(argv + (["--stream", "--tile-points", "1000"] if stream else []))


def las_input(path, version, point_format, n=6000, seed=0):
    """`write_rich_las` of a synthetic scene (its colours as RGB), 1 mm coordinates."""
    cloud = scene(n=n, seed=seed, far=False)
    xyz = np.round(cloud.points.astype(np.float64), 3) + [654321.0, 5432100.0, 300.0]
    return write_rich_las(path, version, point_format, xyz, 0.001, np.random.default_rng(seed),
                          rgb=(cloud.colors * 65535).astype(np.uint16))


@pytest.mark.parametrize("version, point_format, suffix", [("1.2", 3, ".las"),
                                                           ("1.4", 7, ".laz")])
@pytest.mark.parametrize("las_field", [None, "pred"])
def test_las_in_las_out_keeps_every_dimension_and_equals_in_memory(
        weights, tmp_path, version, point_format, suffix, las_field):
    src = tmp_path / f"tile{suffix}"
    orig = las_input(src, version, point_format)
    extra = ["--las-field", las_field] if las_field else []
    assert segment(src, tmp_path / f"mem{suffix}", weights, *extra, stream=False) == 0
    assert segment(src, tmp_path / f"str{suffix}", weights, *extra) == 0
    mem = laspy.read(str(tmp_path / f"mem{suffix}"))
    got = laspy.read(str(tmp_path / f"str{suffix}"))
    assert got.header.version == orig.header.version and got.point_format.id == point_format
    np.testing.assert_array_equal(got.header.scales, orig.header.scales)
    np.testing.assert_array_equal(got.header.offsets, orig.header.offsets)
    assert [(v.user_id, v.record_id, v.record_data) for v in got.header.vlrs
            if v.user_id == "survey"] == [("survey", 7, b"EPSG:32632")]
    for name in orig.point_format.dimension_names:  # the input's values, prediction aside
        if name != "classification" or las_field:
            np.testing.assert_array_equal(np.asarray(got[name]), np.asarray(orig[name]),
                                          err_msg=name)
    for name in orig.points.array.dtype.names:  # and its bytes (the classification byte aside)
        if "classification" not in name or las_field:
            np.testing.assert_array_equal(got.points.array[name], orig.points.array[name],
                                          err_msg=name)
    assert list(got.point_format.dimension_names) == list(mem.point_format.dimension_names)
    for name in mem.point_format.dimension_names:  # and the in-memory output's, every one
        np.testing.assert_array_equal(np.asarray(got[name]), np.asarray(mem[name]), err_msg=name)
    same_las(tmp_path / f"str{suffix}", tmp_path / f"mem{suffix}")
    if las_field:
        np.testing.assert_array_equal(got.classification, orig.classification)
        assert 0 <= np.asarray(got.pred).min() and np.asarray(got.pred).max() < 13


def ply_with_fields(path, n=6000, seed=1):
    """A PLY with colours, normals, a `class` label column and fields of every writer type: an
    int, a float, a double, a uint32 beyond int32 (written as double) and names each writer
    must adjust."""
    cloud = scene(n=n, seed=seed, far=False)
    rng = np.random.default_rng(seed)
    normals = rng.normal(size=(n, 3)).astype(np.float32)
    columns = [("x", "<f4", cloud.points[:, 0]), ("y", "<f4", cloud.points[:, 1]),
               ("z", "<f4", cloud.points[:, 2])]
    columns += [(c, "u1", (cloud.colors[:, i] * 255).astype(np.uint8))
                for i, c in enumerate(("red", "green", "blue"))]
    columns += [(c, "<f4", normals[:, i]) for i, c in enumerate(("nx", "ny", "nz"))]
    columns += [("class", "<i4", cloud.labels.astype(np.int32)),
                ("intensity", "<u2", rng.integers(0, 4000, n).astype(np.uint16)),
                ("reflectance", "<f4", rng.random(n).astype(np.float32)),
                ("gps_time", "<f8", rng.random(n) * 1e5),
                ("stamp", "<u4", rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32)),
                ("pred", "<i4", np.full(n, 7, np.int32))]  # replaced by this run's
    kinds = {"<f4": "float", "u1": "uchar", "<i4": "int", "<u2": "ushort", "<f8": "double",
             "<u4": "uint"}
    table = np.empty(n, [(name, code) for name, code, _ in columns])
    for name, _, values in columns:
        table[name] = values
    head = ["ply", "format binary_little_endian 1.0", f"element vertex {n}"]
    head += [f"property {kinds[code]} {name}" for name, code, _ in columns] + ["end_header"]
    path.write_bytes(("\n".join(head) + "\n").encode() + table.tobytes())
    return table


@pytest.mark.parametrize("suffix", [".ply", ".npy", ".txt", ".las"])
def test_ply_with_extra_properties_streams_what_memory_writes(weights, tmp_path, capsys,
                                                              suffix):
    src = tmp_path / "in.ply"
    table = ply_with_fields(src)
    assert segment(src, tmp_path / f"mem{suffix}", weights, stream=False) == 0
    mem_out = capsys.readouterr()
    assert segment(src, tmp_path / f"str{suffix}", weights) == 0
    str_out = capsys.readouterr()
    if suffix == ".las":
        same_las(tmp_path / f"str{suffix}", tmp_path / f"mem{suffix}")
    else:
        assert (tmp_path / f"str{suffix}").read_bytes() == (tmp_path / f"mem{suffix}").read_bytes()
    back = read_points(tmp_path / f"str{suffix}")
    for name in ("intensity", "reflectance", "gps_time"):
        np.testing.assert_allclose(back.fields[name], table[name], rtol=1e-6, err_msg=name)
    if suffix != ".txt":  # text has no types: read back as float32
        np.testing.assert_array_equal(back.fields["stamp"], table["stamp"].astype(np.float64))
    np.testing.assert_array_equal(back.fields["class"] if suffix == ".las" else back.labels,
                                  table["class"])  # LAS: extra bytes, not ASPRS codes
    assert not np.array_equal(back.fields["pred"], table["pred"])  # this run's predictions
    assert "integers beyond 32 bits written as double" in mem_out.out + str_out.err
    assert "the input's field 'pred' is replaced by this run's" in str_out.err


def test_sigkill_then_resume_writes_the_whole_las(weights, tmp_path):
    src = tmp_path / "tile.laz"
    las_input(src, "1.4", 7, seed=3)
    out = tmp_path / "killed.laz"
    argv = ["segment", str(src), "--weights", str(weights), "--out", str(out), "--no-harmonise",
            "--threads", "1", "--stream", "--tile-points", "1000"]
    kill_after_first_tile(argv, out)
    assert main(argv) == 2  # needs --resume
    assert main(argv + ["--resume"]) == 0
    assert not work_folder(out).exists()
    assert segment(src, tmp_path / "mem.laz", weights, stream=False) == 0
    assert len(laspy.read(str(out)).points) == 6000
    same_las(out, tmp_path / "mem.laz")  # every point once, labelled as in memory


def _listing(folder):
    return sorted(p.name for p in folder.iterdir())


WHY = {"npz": "a chunk at a time", "las_field_ply": "--las-field applies to .las/.laz",
       "colors_input": "no colours", "long_name": "32 bytes",
       "narrow_classification": "holds 0–31"}


@pytest.mark.parametrize("case", ["npz", "las_field_ply", "colors_input", "long_name",
                                  "narrow_classification"])
def test_refused_combinations_exit_2_and_write_nothing(weights, tmp_path, capsys, case):
    src, out, extra = tmp_path / "in.ply", tmp_path / "out.ply", []
    cloud = scene(n=3000, seed=2, far=False)
    if case == "npz":
        out = tmp_path / "out.npz"
    elif case == "las_field_ply":
        extra = ["--las-field", "pred"]
    elif case == "colors_input":
        cloud.colors = None
        extra = ["--colors", "input"]
    elif case == "long_name":  # a field name LAS extra bytes cannot hold (32 bytes)
        cloud.fields["a_field_name_longer_than_las_allows"] = np.zeros(len(cloud), np.float32)
        out = tmp_path / "out.las"
    if case == "narrow_classification":  # point format 1: 5-bit classification, 13 classes
        src, out = tmp_path / "in.las", tmp_path / "out.las"    # fit: a 40-class model
        las = laspy.LasData(laspy.LasHeader(point_format=1, version="1.2"))
        las.x, las.y, las.z = cloud.points.astype(np.float64).T
        las.write(str(src))
        w = tmp_path / "w40.pt"
        _wide_model(w)
        weights = w
    else:
        write_ply(src, cloud)
    before = _listing(tmp_path)
    assert segment(src, out, weights, *extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and WHY[case] in err[-1], err[-1]
    assert _listing(tmp_path) == before and not work_folder(out).exists()


def _wide_model(path):
    from conftest import tiny_model

    from pointgcn.models import build_model, save_checkpoint

    cfg = {"data": {"dataset": "s3dis", "n_points": 64, "block": 1.0, "stride": 0.5},
           "model": tiny_model(in_channels=9, n_classes=40)}
    save_checkpoint(path, build_model(cfg).eval(), cfg)


def _in_memory(src, out, classification=None):
    """apps/segment.py's output for `src` with the stand-in model, written whole."""
    from test_streaming import SETTINGS, LinearPredictor

    from pointgcn.engine.confidence import prediction_confidence
    from pointgcn.engine.inference import predict_room
    from pointgcn.io import output_fields, write_points

    cloud = read_points(src)
    las = str(src).endswith((".las", ".laz")) and str(out).endswith((".las", ".laz"))
    if not las:
        cloud.fields = output_fields(out.suffix, cloud.fields)[0]
    logits = predict_room(cloud, LinearPredictor(), 13, SETTINGS.block, SETTINGS.stride,
                          SETTINGS.n_points)
    pred, sure, entropy = prediction_confidence(logits, logits.argmax(1))
    cloud.fields = {**cloud.fields, "pred": pred.astype(np.int32), "confidence": sure,
                    "entropy": entropy}
    write_points(out, cloud, template=src if las else None, classification=classification)


@pytest.mark.parametrize("suffix", [".txt", ".las", ".npy", ".ply"])
def test_whole_cloud_choices_hold_across_chunks(tmp_path, suffix):
    """Choices in-memory writers make on the whole cloud — the coordinates' decimals (.txt, a
    new LAS's scale), which fields fit LAS dimensions, integers beyond 32 bits — are made
    alike when only a late chunk decides them (chunks of 700 rows here)."""
    from test_streaming import SETTINGS, LinearPredictor, grey

    from pointgcn.engine.streaming import stream_segment
    from pointgcn.io.chunks import ChunkReader

    cloud = scene(n=5000, seed=4, far=False)
    cloud.points = np.round(cloud.points.astype(np.float64), 2).astype(np.float32)
    cloud.points[4990] += np.float32(0.0004)  # 4 decimals, in the last chunk only
    rng = np.random.default_rng(4)
    intensity = rng.integers(0, 60000, len(cloud))
    intensity[4800] = 70000  # beyond LAS's 16-bit intensity, in a late chunk only
    wide = rng.integers(0, 1000, len(cloud))
    wide[4500] = 2**33  # beyond int32 in a late chunk only
    cloud.fields = {"intensity": intensity, "wide": wide}
    src = tmp_path / "in.npy"
    from pointgcn.io import write_npy
    write_npy(src, cloud)
    _in_memory(src, tmp_path / f"mem{suffix}")
    stream_segment(ChunkReader(src), tmp_path / f"str{suffix}", LinearPredictor(), SETTINGS, {},
                   colorize=grey, chunk=700, tile_points=1500, progress=False)
    if suffix == ".las":
        same_las(tmp_path / f"str{suffix}", tmp_path / f"mem{suffix}")
    else:
        assert (tmp_path / f"str{suffix}").read_bytes() == (tmp_path / f"mem{suffix}").read_bytes()
    if suffix == ".las":
        las = laspy.read(str(tmp_path / f"str{suffix}"))
        assert "intensity_field" in las.point_format.extra_dimension_names
        from pointgcn.io.las_write import coordinate_scale

        assert coordinate_scale(cloud.points[:700])[0] == 0.01  # the first chunk's own choice
        assert las.header.scales[0] < 0.01  # the whole cloud's


def test_las_with_empty_colour_slots_streams_as_colourless(weights, tmp_path):
    """A point format with RGB that the scanner left at 0 reads as no colours (io/las.py): the
    stream's model input and output agree with memory (class colours, not black)."""
    src = tmp_path / "grey.las"
    las = laspy.LasData(laspy.LasHeader(point_format=3, version="1.2"))
    cloud = scene(n=4000, seed=6, far=False)
    las.header.scales = [0.001] * 3
    las.x, las.y, las.z = cloud.points.astype(np.float64).T
    las.write(str(src))
    assert read_points(src).colors is None
    assert segment(src, tmp_path / "mem.ply", weights, stream=False) == 0
    assert segment(src, tmp_path / "str.ply", weights) == 0
    assert (tmp_path / "str.ply").read_bytes() == (tmp_path / "mem.ply").read_bytes()


def test_min_confidence_marks_the_same_points_as_in_memory(weights, tmp_path, capsys):
    src = tmp_path / "in.ply"
    write_ply(src, scene(n=5000, seed=9, far=False))
    assert segment(src, tmp_path / "o.ply", weights) == 0
    cut = float(np.round(np.median(read_points(tmp_path / "o.ply").fields["confidence"]), 4))
    extra = ["--min-confidence", str(cut), "--colors", "class"]
    capsys.readouterr()
    assert segment(src, tmp_path / "mem.ply", weights, *extra, stream=False) == 0
    mem = capsys.readouterr().out
    assert segment(src, tmp_path / "str.ply", weights, *extra) == 0
    got = capsys.readouterr().out
    assert (tmp_path / "str.ply").read_bytes() == (tmp_path / "mem.ply").read_bytes()
    unsure = int((read_points(tmp_path / "str.ply").fields["pred"] < 0).sum())
    assert 0 < unsure < 5000
    line = f"{unsure} points below confidence {cut:g}: pred -1"
    assert line in mem and line in got and "(unsure, -1)" in got
    # pred −1 cannot be a LAS classification: refused, as in memory
    assert segment(src, tmp_path / "x.las", weights, "--min-confidence", "0.5",
                   "--las-field", "classification") == 2
    assert not (tmp_path / "x.las").exists()


def test_a_run_stopped_while_writing_resumes_by_writing_again(tmp_path, monkeypatch):
    """Interrupted in the output pass (after every tile is done): no partial output, the tile
    results kept, and --resume writes the same file as an uninterrupted run."""
    from test_streaming import SETTINGS, LinearPredictor, grey

    import pointgcn.io.stream_writers as writers
    from pointgcn.engine.streaming import stream_segment
    from pointgcn.io.chunks import ChunkReader

    src = tmp_path / "in.laz"
    las_input(src, "1.4", 7, n=4000, seed=5)
    run = dict(colorize=grey, chunk=700, tile_points=1500, progress=False,
               classification="pred")
    real = writers._Writer.write
    calls = []

    def stop_at_third(self, chunk, rows):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, chunk, rows)

    monkeypatch.setattr(writers._Writer, "write", stop_at_third)
    out = tmp_path / "out.laz"
    with pytest.raises(KeyboardInterrupt):
        stream_segment(ChunkReader(src), out, LinearPredictor(), SETTINGS, {}, **run)
    assert not out.exists() and (work_folder(out) / "progress.json").exists()
    monkeypatch.setattr(writers._Writer, "write", real)
    stream_segment(ChunkReader(src), out, LinearPredictor(), SETTINGS, {}, resume=True, **run)
    stream_segment(ChunkReader(src), tmp_path / "whole.laz", LinearPredictor(), SETTINGS, {},
                   **run)
    same_las(out, tmp_path / "whole.laz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.laz", "out.laz", "whole.laz"]


@pytest.mark.parametrize("suffix", [".ply", ".npy", ".txt"])
def test_las_in_other_formats_out_equals_in_memory(weights, tmp_path, suffix):
    """Every LAS dimension read as read_points reads it (flags, GPS time, a scaled and a
    3-value extra-bytes dimension, ASPRS classification), written as memory writes it."""
    src = tmp_path / "tile.laz"
    las_input(src, "1.4", 7, n=5000, seed=8)
    assert segment(src, tmp_path / f"mem{suffix}", weights, stream=False) == 0
    assert segment(src, tmp_path / f"str{suffix}", weights) == 0
    assert (tmp_path / f"str{suffix}").read_bytes() == (tmp_path / f"mem{suffix}").read_bytes()
    back = read_points(tmp_path / f"str{suffix}")
    assert {"gps_time", "amplitude", "echo_0", "echo_2", "intensity"} <= set(back.fields)


def test_nearest_first_picks_the_first_of_equally_near_points():
    """Against brute force on a lattice, where most queries have several nearest candidates
    (and more than k of them, with k = 2)."""
    from pointgcn.data.rooms import nearest_first

    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(*[np.arange(6)] * 3, indexing="ij"), -1).reshape(-1, 3)
    cand = (grid[rng.permutation(len(grid))[:150]] * 0.05).astype(np.float32)
    queries = ((rng.integers(0, 11, (400, 3)) * 0.025)).astype(np.float32)
    d2 = ((cand[None].astype(np.float64) - queries[:, None].astype(np.float64)) ** 2).sum(-1)
    want = np.array([np.flatnonzero(row == row.min()).min() for row in d2])
    assert (np.sum(d2 == d2.min(1, keepdims=True), 1) > 2).any()  # more ties than k
    for k, rows in ((2, 50), (8, 1 << 16)):
        dist, got = nearest_first(cand, queries, k=k, rows=rows)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_allclose(dist, np.sqrt(d2.min(1)))


def test_stream_equals_memory_when_undrawn_points_have_tied_neighbours(tmp_path):
    """Quantised coordinates (a 10 cm lattice) and blocks that draw few of their points: the
    undrawn take the logits of a nearest drawn point, and many have several. The stream's
    tiles pick the one the whole cloud picks: the same confidence and entropy everywhere."""
    from test_streaming import LinearPredictor, grey

    from pointgcn.data.build import SampleSettings
    from pointgcn.engine.confidence import prediction_confidence
    from pointgcn.engine.inference import predict_room
    from pointgcn.engine.streaming import stream_segment
    from pointgcn.io.chunks import ChunkReader

    settings = SampleSettings(n_points=16, block=1.0, stride=0.5)
    grid = np.stack(np.meshgrid(np.arange(100), np.arange(80), np.arange(2), indexing="ij"),
                    -1).reshape(-1, 3) * 0.1  # each point has 4–5 neighbours 10 cm away
    rng = np.random.default_rng(11)
    cloud = PointCloud(grid[rng.permutation(len(grid))].astype(np.float32),
                       rng.random((len(grid), 3)).astype(np.float32))
    write_ply(tmp_path / "in.ply", cloud)
    ref = read_points(tmp_path / "in.ply")
    logits = predict_room(ref, LinearPredictor(), 13, settings.block, settings.stride,
                          settings.n_points)
    pred, sure, entropy = prediction_confidence(logits)
    res = stream_segment(ChunkReader(tmp_path / "in.ply"), tmp_path / "out.ply",
                         LinearPredictor(), settings, {}, colorize=grey, tile_points=1500,
                         reach=1.0, progress=False)
    assert res.far == 0  # every undrawn point's nearest drawn point is within the tile's reach
    got = read_points(tmp_path / "out.ply")
    np.testing.assert_array_equal(got.fields["pred"], pred)
    np.testing.assert_array_equal(got.fields["confidence"], sure)
    np.testing.assert_array_equal(got.fields["entropy"], entropy)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("dim, extra", [("confidence", []),
                                        ("pred", ["--las-field", "pred", "--min-confidence",
                                                  "0.5"])])
def test_a_las_dimension_that_cannot_hold_this_runs_field_is_refused_before_the_work(
        weights, tmp_path, capsys, stream, dim, extra):
    """A scanner's own uint8 `confidence` (or a `pred` without room for −1) would fail only
    when writing, after every tile: refused up front, in memory and streamed, nothing written."""
    las = laspy.LasData(laspy.LasHeader(point_format=3, version="1.2"))
    las.add_extra_dim(laspy.ExtraBytesParams(name=dim, type=np.uint8))
    xyz = scene(n=3000, seed=3, far=False).points.astype(np.float64)
    las.header.scales = [0.001] * 3
    las.x, las.y, las.z = xyz.T
    src = tmp_path / "scan.las"
    las.write(str(src))
    before = src.read_bytes()
    out = tmp_path / "out.las"
    assert segment(src, out, weights, *extra, stream=stream) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if f"own LAS dimension {dim!r}" in line]
    assert len(errors) == 1 and errors[0].startswith("error")
    assert "segment" not in err.split("error")[0]  # no progress bar: before the work
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scan.las"]
    assert src.read_bytes() == before
