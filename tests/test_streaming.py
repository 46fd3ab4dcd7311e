"""Out-of-core segmentation (engine/streaming.py): equal to the in-memory path, resumable after
SIGKILL with no point lost or labelled twice, bad input refused with nothing written."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_room_checkpoint

from apps.cli import main
from pointgcn.data.build import SampleSettings
from pointgcn.data.tiles import TileGrid
from pointgcn.engine.inference import predict_room
from pointgcn.engine.streaming import stream_segment, work_folder
from pointgcn.io import PointCloud, read_points, write_npy, write_ply
from pointgcn.io.chunks import ChunkReader

ROOT = Path(__file__).resolve().parents[1]


class LinearPredictor:
    """A fast stand-in model: fixed random per-point linear logits of the 9 block channels
    (the block sampling, channels and voting under test are the real ones)."""
    in_channels, n_classes, task, min_points = 9, 13, "segmentation", 4

    def __init__(self, seed=0):
        self.w = np.random.default_rng(seed).normal(size=(13, 9)).astype(np.float32)

    def __call__(self, feats):
        return np.einsum("cf,bfn->bcn", self.w, feats)


def scene(n=12000, seed=0, colors=True, far=True):
    """Uniform points over 12 × 9 m (undrawn points: blocks hold more than n_points), points on
    block edges, a sparse strip along one side and a sparse far corner (small blocks)."""
    rng = np.random.default_rng(seed)
    pts = rng.random((n, 3)) * [12.0, 9.0, 2.5] + [3.0, -2.0, 0.0]
    if far:
        pts[:150] = rng.random((150, 3)) + [16.2, 7.5, 0.0]
        pts[200:500] = rng.random((300, 3)) * [12.0, 0.6, 1.0] + [3.0, -3.4, 0.0]
    pts[150:200, :2] = np.round(pts[150:200, :2] / 0.5) * 0.5
    return PointCloud(pts.astype(np.float32),
                      rng.random((n, 3)).astype(np.float32) if colors else None,
                      labels=rng.integers(0, 13, n))


SETTINGS = SampleSettings(n_points=64, block=1.0, stride=0.5)


def grey(pred):
    return np.stack([pred / 12.0] * 3, axis=1)


def in_memory_pred(cloud, seed=0):
    logits = predict_room(cloud, LinearPredictor(), 13, SETTINGS.block, SETTINGS.stride,
                          SETTINGS.n_points, seed=seed)
    return logits.argmax(1)


@pytest.mark.parametrize("fmt,colors,tile_points,seed", [
    ("ply", True, 1500, 0), ("npy", True, 4000, 3), ("ply", False, 800, 1), ("npy", False, 10**6, 2),
])
def test_streaming_equals_in_memory(tmp_path, fmt, colors, tile_points, seed):
    cloud = scene(seed=seed, colors=colors)
    src = tmp_path / f"in.{fmt}"
    (write_ply if fmt == "ply" else write_npy)(src, cloud)
    out = tmp_path / "out.ply"
    res = stream_segment(ChunkReader(src), out, LinearPredictor(), SETTINGS, {}, seed=seed,
                         colorize=grey, truth=True, chunk=2500, tile_points=tile_points,
                         progress=False)
    got = read_points(out)
    expect = in_memory_pred(read_points(src), seed)
    np.testing.assert_array_equal(got.fields["pred"], expect)
    np.testing.assert_array_equal(got.points, cloud.points)
    np.testing.assert_array_equal(got.labels, cloud.labels)
    assert (res.tiles > 1) == (tile_points < 10**6)
    assert res.counts.sum() == len(cloud) and res.confusion.sum() == len(cloud)
    assert not work_folder(out).exists()


def test_streaming_las_equals_in_memory(tmp_path):
    laspy = pytest.importorskip("laspy")
    cloud = scene(seed=5)
    las = laspy.LasData(laspy.LasHeader(point_format=2, version="1.2"))
    las.header.scales, las.header.offsets = [0.001] * 3, [500000.0, 4000000.0, 0.0]
    xyz = cloud.points.astype(np.float64) + [500000.0, 4000000.0, 10.0]  # georeferenced
    las.x, las.y, las.z = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    rgb = (cloud.colors * 65535).astype(np.uint16)
    las.red, las.green, las.blue = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    las.classification = (cloud.labels % 7).astype(np.uint8)
    las.write(str(tmp_path / "in.las"))
    out = tmp_path / "out.ply"
    stream_segment(ChunkReader(tmp_path / "in.las"), out, LinearPredictor(), SETTINGS, {},
                   colorize=grey, chunk=3000, tile_points=2000, progress=False)
    ref = read_points(tmp_path / "in.las")
    got = read_points(out)
    np.testing.assert_array_equal(got.fields["pred"], in_memory_pred(ref))
    np.testing.assert_allclose(got.absolute_points(), ref.absolute_points(), atol=1e-3)
    np.testing.assert_array_equal(got.fields["classification"], ref.labels)


def test_chunks_read_what_read_points_reads(tmp_path):
    cloud = scene(n=5000, seed=4)
    cloud.colors[0] = [1.0, 1.0, 1.0]
    for i, write in enumerate((write_ply, write_npy)):
        path = tmp_path / f"c{i}.{'ply' if i == 0 else 'npy'}"
        write(path, cloud)
        reader = ChunkReader(path)
        scan = reader.scan(700)
        parts = [(*reader.converted(c, scan), reader.labels_of(c)) for c in reader.chunks(700)]
        ref = read_points(path)
        for k, want in enumerate((ref.points, ref.colors, ref.labels)):
            np.testing.assert_array_equal(np.concatenate([p[k] for p in parts]), want)


def test_tiles_load_every_point_within_the_halo_of_their_core():
    rng = np.random.default_rng(0)
    xy = rng.random((4000, 2)) * [10.0, 7.0]
    xy[:100] = np.round(xy[:100] / 0.5) * 0.5  # on tile edges
    grid = TileGrid((10.0, 7.0), 2.5, 1.25)
    loads = dict(grid.loading(xy))
    nx, ny = grid.shape
    core = grid.core(xy)
    for t in range(len(grid)):
        x0, x1, y0, y1 = grid.core_square(t)
        d = np.maximum(np.maximum(np.maximum(x0 - xy[:, 0], xy[:, 0] - x1),
                                  np.maximum(y0 - xy[:, 1], xy[:, 1] - y1)), 0)
        np.testing.assert_array_equal(loads.get(t, np.zeros(0, int)), np.flatnonzero(d <= 1.25))
        assert set(np.flatnonzero(core == t)) <= set(loads.get(t, []))
    assert np.bincount(core, minlength=nx * ny).sum() == len(xy)


# ---------------------------------------------------------------- the command line

@pytest.fixture(scope="module")
def cli_case(tmp_path_factory):
    d = tmp_path_factory.mktemp("stream")
    tiny_room_checkpoint(d / "seg.pt", 64, 0.5)
    cloud = scene(n=6000, seed=7, far=False)
    write_ply(d / "in.ply", cloud)
    return d


def _cli(d, out, *extra):
    return ["segment", str(d / "in.ply"), "--weights", str(d / "seg.pt"), "--out", str(out),
            "--no-harmonise", "--threads", "1", *extra]


def _same_labelling(streamed, in_memory):
    """The streamed PLY is the in-memory output's file, byte for byte: its points, the input's
    colours and label column, `pred`, `confidence` and `entropy`."""
    assert Path(streamed).read_bytes() == Path(in_memory).read_bytes()


def test_cli_stream_matches_in_memory_output_with_progress_on_stderr(cli_case, tmp_path,
                                                                    capsys):
    assert main(_cli(cli_case, tmp_path / "mem.ply")) == 0
    capsys.readouterr()
    assert main(_cli(cli_case, tmp_path / "str.ply", "--stream", "--tile-points", "1000")) == 0
    cap = capsys.readouterr()
    assert "segment" in cap.err and "pt/s" in cap.err and "<" in cap.err  # tqdm with ETA
    assert "6000 points" in cap.out and "tiles" in cap.out
    _same_labelling(tmp_path / "str.ply", tmp_path / "mem.ply")


def test_cli_stream_with_an_onnx_model_matches_its_in_memory_output(cli_case, tmp_path,
                                                                  capsys):
    """--stream runs an exported model in onnxruntime (faster on the shipped room model:
    docs/performance.md) with the in-memory labels, confidences and entropies of that .onnx."""
    model = tmp_path / "seg.onnx"
    assert main(["export", str(cli_case / "seg.pt"), "--out", str(model), "--no-parity"]) == 0
    onnx = ["segment", str(cli_case / "in.ply"), "--onnx", str(model), "--no-harmonise",
            "--threads", "1"]
    assert main([*onnx, "--out", str(tmp_path / "mem.ply")]) == 0
    assert main([*onnx, "--out", str(tmp_path / "str.ply"), "--stream",
                 "--tile-points", "1000"]) == 0
    capsys.readouterr()
    _same_labelling(tmp_path / "str.ply", tmp_path / "mem.ply")


def kill_after_first_tile(argv, out):
    """Run `pointgcn ARGV` in a subprocess and SIGKILL it once a tile is done; returns the
    progress record it left (shared by tests/test_stream_output.py)."""
    cmd = [sys.executable, "-m", "apps.cli", *argv]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    progress = work_folder(out) / "progress.json"
    done = 0
    try:
        t0 = time.time()
        while time.time() - t0 < 300 and proc.poll() is None:
            try:
                done = json.loads(progress.read_text())["done"]
            except (OSError, ValueError, KeyError):
                done = 0
            if done >= 1:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert done >= 1 and not out.exists()
    tiles = json.loads(progress.read_text())
    assert tiles["done"] < len(tiles["core"])  # killed mid-run
    return tiles


def test_sigkill_then_resume_labels_every_point_once(cli_case, tmp_path):
    out = tmp_path / "killed.ply"
    kill_after_first_tile(_cli(cli_case, out, "--stream", "--tile-points", "1000"), out)
    assert main(_cli(cli_case, out, "--stream", "--tile-points", "1000")) == 2  # needs --resume
    assert main(_cli(cli_case, out, "--stream", "--resume", "--tile-points", "1000")) == 0
    assert not work_folder(out).exists()
    whole = tmp_path / "whole.ply"
    assert main(_cli(cli_case, whole, "--stream", "--tile-points", "1000")) == 0
    assert out.read_bytes() == whole.read_bytes()


def _nothing_written(folder, before):
    return sorted(p.name for p in folder.iterdir()) == before


@pytest.mark.parametrize("case", ["nan", "truncated", "ascii", "pcd", "empty", "not_ours",
                                  "changed"])
def test_bad_input_exits_2_and_writes_nothing(cli_case, tmp_path, capsys, case):
    src = tmp_path / "in.ply"
    cloud = scene(n=3000, seed=8, far=False)
    out = tmp_path / "out.ply"
    extra = []
    if case == "nan":
        cloud.points[5, 1] = np.nan
        write_ply(src, cloud)
    elif case == "truncated":
        write_ply(src, cloud)
        src.write_bytes(src.read_bytes()[:-100])
    elif case == "ascii":
        write_ply(src, cloud, binary=False)
    elif case == "pcd":
        src = tmp_path / "in.pcd"
        src.write_text("# .PCD v0.7\nVERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\n"
                       "COUNT 1 1 1\nWIDTH 1\nHEIGHT 1\nPOINTS 1\nDATA ascii\n0 0 0\n")
    elif case == "empty":
        src.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 0\n"
                        b"property float x\nproperty float y\nproperty float z\nend_header\n")
    elif case == "not_ours":
        write_ply(src, cloud)
        work_folder(out).mkdir()
        (work_folder(out) / "mine.txt").write_text("keep")
    else:  # a resume whose input changed since the killed run
        write_ply(src, cloud)
        work = work_folder(out)
        work.mkdir()
        (work / "manifest.json").write_text(json.dumps({"format": "pointgcn-stream 1"}))
        extra = ["--resume"]
    before = sorted(p.name for p in tmp_path.iterdir())
    argv = ["segment", str(src), "--weights", str(cli_case / "seg.pt"), "--out", str(out),
            "--stream", "--tile-points", "1000", *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ")
    assert _nothing_written(tmp_path, before) and not out.exists()
    if case == "not_ours":
        assert (work_folder(out) / "mine.txt").read_text() == "keep"


def test_a_cloud_too_big_for_free_memory_streams_by_itself(cli_case, tmp_path, capsys,
                                                          monkeypatch):
    import apps.segment_stream as stream_app

    monkeypatch.setattr(stream_app, "available_memory", lambda: 1000)
    assert main(_cli(cli_case, tmp_path / "auto.ply", "--tile-points", "1000")) == 0
    out = capsys.readouterr().out
    assert "streaming (as --stream)" in out and "tiles)" in out
    monkeypatch.setattr(stream_app, "available_memory", lambda: 10**12)
    assert main(_cli(cli_case, tmp_path / "mem.ply")) == 0
    assert "tiles)" not in capsys.readouterr().out
    _same_labelling(tmp_path / "auto.ply", tmp_path / "mem.ply")


def test_stream_preflight_passes_metres_and_refuses_millimetres(cli_case, tmp_path, capsys):
    argv = ["segment", str(cli_case / "in.ply"), "--weights", str(cli_case / "seg.pt"),
            "--out", str(tmp_path / "m.ply"), "--stream", "--tile-points", "1000"]
    assert main(argv) == 0
    assert "preflight" in capsys.readouterr().out
    mm = read_points(cli_case / "in.ply")
    mm.points = mm.points * 1000.0
    write_ply(tmp_path / "mm.ply", mm)
    argv[1], argv[5] = str(tmp_path / "mm.ply"), str(tmp_path / "mm_out.ply")
    assert main(argv) == 2
    assert "--no-harmonise" in capsys.readouterr().err
    assert not (tmp_path / "mm_out.ply").exists()


def test_preview_takes_every_kth_point_of_the_whole_file_across_chunks():
    from pointgcn.engine.streaming import _Preview
    from pointgcn.io import PointCloud

    xyz = np.arange(30, dtype=np.float32).reshape(10, 3)
    labels = np.arange(10) % 3
    preview = _Preview(10, 3)  # step 4: rows 0, 4, 8 of the file
    for start in (0, 3, 7):  # chunks of 3, 4 and 3 rows
        stop = {0: 3, 3: 7, 7: 10}[start]
        part = PointCloud(xyz[start:stop])
        preview.add(start, part, np.arange(start, stop) * 10, labels[start:stop])
    got = preview.cloud()
    np.testing.assert_array_equal(got.points, xyz[[0, 4, 8]])
    np.testing.assert_array_equal(got.fields["pred"], [0, 40, 80])
    np.testing.assert_array_equal(got.fields["truth"], labels[[0, 4, 8]])
    assert _Preview(10, 0).cloud() is None


def test_cli_stream_png_preview(cli_case, tmp_path, capsys):
    png = tmp_path / "str.png"
    assert main(_cli(cli_case, tmp_path / "str.ply", "--stream", "--tile-points", "1000",
                     "--png", str(png))) == 0
    assert "6,000 of 6,000 points" in capsys.readouterr().out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_refusal_in_the_binning_pass_leaves_no_folder_behind(tmp_path, capsys):
    """A bad label in a late chunk is found while binning, after the work folder (and the
    output's new parent folders) exist: refused in one line, and nothing is left."""
    ckpt = tiny_room_checkpoint(tmp_path / "seg.pt", 64, 0.5)
    cloud = scene(n=70_000, seed=2, far=False)
    rows = np.zeros(len(cloud), [("x", "f4"), ("y", "f4"), ("z", "f4"), ("label", "f4")])
    rows["x"], rows["y"], rows["z"] = cloud.points.T
    rows["label"][-1] = 1.5  # not a class id, in the last chunk
    src = tmp_path / "in.npy"
    np.save(src, rows)
    out = tmp_path / "new" / "dir" / "o.ply"
    assert main(["segment", str(src), "--weights", str(ckpt), "--out", str(out),
                 "--no-harmonise", "--threads", "1", "--stream"]) == 2
    err = capsys.readouterr().err
    assert err.count("\nerror") + err.startswith("error") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.npy", "seg.pt"]


def _npy_with_fields(path, n=6000, seed=5, sem_top=12):
    """xyz, rgb and two label-like columns: `label` and a second set `sem` (ints to sem_top)."""
    cloud = scene(n=n, seed=seed, far=False)
    rows = np.zeros(n, [("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"),
                        ("blue", "u1"), ("label", "i4"), ("sem", "f4"), ("normal", "f4", (3,))])
    rows["x"], rows["y"], rows["z"] = cloud.points.T
    rows["red"], rows["green"], rows["blue"] = (cloud.colors * 255).astype(np.uint8).T
    rows["label"] = cloud.labels
    rows["sem"] = np.random.default_rng(seed + 1).integers(0, sem_top + 1, n)
    np.save(path, rows)
    return path


def test_cli_stream_scores_the_labels_field_named_as_in_memory(tmp_path, capsys):
    ckpt = tiny_room_checkpoint(tmp_path / "seg.pt", 64, 0.5)
    src = _npy_with_fields(tmp_path / "in.npy")
    argv = ["segment", str(src), "--weights", str(ckpt), "--no-harmonise", "--threads", "1",
            "--labels", "sem"]
    assert main([*argv, "--out", str(tmp_path / "mem.ply")]) == 0
    mem = [line for line in capsys.readouterr().out.splitlines() if "OA" in line]
    assert main([*argv, "--out", str(tmp_path / "str.ply"), "--stream",
                 "--tile-points", "1000"]) == 0
    out = capsys.readouterr().out
    got = [line for line in out.splitlines() if "OA" in line]
    assert len(mem) == 1 and len(got) == 1
    oa = lambda line: float(line.split("OA")[1].split()[0])  # noqa: E731
    assert oa(got[0]) == pytest.approx(oa(mem[0]), abs=5e-5)
    _same_labelling(tmp_path / "str.ply", tmp_path / "mem.ply")  # the output is unchanged
    pred = read_points(tmp_path / "str.ply").fields["pred"]
    sem = np.load(src)["sem"].astype(np.int64)
    assert oa(got[0]) == pytest.approx((pred == sem).mean(), abs=5e-5)


@pytest.mark.parametrize("field, sem_top, says", [
    ("missing", 12, "no field 'missing' to take labels from"),
    ("normal", 12, "'normal' has 3 values per point"),
    ("sem", 20, "the labels go up to 20, beyond this model's classes 0–12"),
])
def test_cli_stream_labels_refused_before_the_work(tmp_path, capsys, field, sem_top, says):
    ckpt = tiny_room_checkpoint(tmp_path / "seg.pt", 64, 0.5)
    src = _npy_with_fields(tmp_path / "in.npy", sem_top=sem_top)
    assert main(["segment", str(src), "--weights", str(ckpt), "--no-harmonise", "--threads",
                 "1", "--labels", field, "--out", str(tmp_path / "o.ply"), "--stream"]) == 2
    err = capsys.readouterr().err
    assert says in err and "segment:" not in err  # no progress bar: before the work
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.npy", "seg.pt"]
