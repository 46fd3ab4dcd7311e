"""S3DIS: raw tree parsing (incl. the archive's bit-flip corruptions), PointNet's block channels
against an independent computation, the three layouts, splits, and the DeepGCN preprocessing."""
import h5py
import numpy as np
import pytest
import torch

from pointgcn.data.classes import S3DIS_CLASSES
from pointgcn.data.rooms import room_to_blocks
from pointgcn.data.s3dis import S3DIS, find_s3dis, iter_rooms, prepare_s3dis, read_block_h5
from pointgcn.data.s3dis_raw import (NON_NUMERIC, RAW_DIR_NAME, REPAIRED, list_raw_rooms,
                                     parse_annotation, read_raw_room, repair_bit_flips)
from pointgcn.errors import ConfigError, FormatError, InputError

ROOM_SIZE = (2.2, 1.6, 2.5)


def write_annotation(path, xyz, rgb):
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"{x:.3f} {y:.3f} {z:.3f} {r} {g} {b}\n" for (x, y, z), (r, g, b) in zip(xyz, rgb)]
    path.write_text("".join(lines))


def make_room(root, area, room, rng, n=700, offset=(10.0, -3.0, 0.5)):
    """A room of 3 objects (wall, chair, stairs→clutter); returns (xyz, rgb, labels)."""
    room_dir = root / RAW_DIR_NAME / f"Area_{area}" / room
    xyz = np.round(rng.random((n, 3)) * ROOM_SIZE + offset, 3)
    rgb = rng.integers(0, 256, (n, 3))
    parts = np.array_split(np.arange(n), 3)
    names = [("wall_1", 2), ("chair_2", 8), ("stairs_1", 12)]
    for (name, _), idx in zip(names, parts):
        write_annotation(room_dir / "Annotations" / f"{name}.txt", xyz[idx], rgb[idx])
    write_annotation(room_dir / f"{room}.txt", xyz, rgb)  # the room file (not read)
    labels = np.concatenate([np.full(len(idx), lab) for (_, lab), idx in zip(names, parts)])
    order = np.concatenate([parts[1], parts[2], parts[0]])  # files read sorted by name
    return xyz[order], rgb[order], labels[order]


@pytest.fixture(scope="module")
def raw_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("s3dis")
    rng = np.random.default_rng(7)
    rooms = {}
    for area in range(1, 7):
        rooms[f"Area_{area}_office_1"] = make_room(root, area, "office_1", rng)
    rooms["Area_5_hallway_6"] = make_room(root, 5, "hallway_6", rng)
    return root, rooms


def test_repair_restores_cleared_0x20_bits():
    # the reported corruptions: NUL for space, ^P for '0', ^V for '6', ^Q for '1', CRLF endings
    raw = b"1.0\x002.0 3.0 103.0\x100000 -9.1\x160 21\x11.000000\r\n"
    fixed, n = repair_bit_flips(raw)
    assert fixed == b"1.0 2.0 3.0 103.000000 -9.160 211.000000\n" and n == 4
    assert repair_bit_flips(b"1 2\t3\n")[1] == 0  # tab and newline are genuine


def test_parse_drops_and_counts_unrepairable_lines():
    raw = b"1 2 3 4 5 6\n1 2 3\x004 5 6\nfoo 1 2 3 4 5\n\n7 8 9 10 11 12\n"
    parsed = parse_annotation(raw, "x.txt")
    assert parsed.rows.tolist() == [[1, 2, 3, 4, 5, 6]] * 2 + [[7, 8, 9, 10, 11, 12]]
    assert (parsed.repaired, parsed.dropped, parsed.first_bad_line) == (1, {NON_NUMERIC: 1}, 3)
    with pytest.raises(FormatError, match=r"x.txt line 3: non-numeric lines .* at most 0"):
        parse_annotation(raw, "x.txt", max_bad_lines=0)


def test_raw_room_labels_order_and_corrupted_line(raw_tree, tmp_path):
    root, rooms = raw_tree
    rooms_found = list_raw_rooms(root)
    assert [(a, p.name) for a, p in rooms_found][:2] == [(1, "office_1"), (2, "office_1")]
    assert len(rooms_found) == 7 and find_s3dis(root).kind == "raw"
    room = read_raw_room(root / RAW_DIR_NAME / "Area_1" / "office_1")
    xyz, rgb, labels = rooms["Area_1_office_1"]
    assert room.name == "Area_1_office_1" and room.area == 1
    np.testing.assert_allclose(room.xyz, xyz)
    np.testing.assert_array_equal(room.rgb, rgb)
    np.testing.assert_array_equal(room.labels, labels)  # stairs → clutter (12)
    # the Area_5/hallway_6 case: a space turned NUL in a copy of a real-looking line
    bad = tmp_path / "Area_5" / "hallway_6" / "Annotations" / "ceiling_1.txt"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"-15.609 39.505 2.214 71 64 54\n-15.610 39.510\x002.215 70 63 55\n")
    r = read_raw_room(bad.parent.parent)
    assert r.fixes == {REPAIRED: 1} and r.labels.tolist() == [0, 0]
    np.testing.assert_allclose(r.xyz[1], [-15.610, 39.510, 2.215])


def expected_blocks(xyz, block=1.0, stride=0.5, min_points=100):
    """Independent PointNet block membership: list of index arrays, x-major order."""
    s = xyz - xyz.min(0)
    out = []
    nx = int(np.ceil((s[:, 0].max() - block) / stride)) + 1
    ny = int(np.ceil((s[:, 1].max() - block) / stride)) + 1
    for i in range(nx):
        for j in range(ny):
            m = ((s[:, 0] >= i * stride) & (s[:, 0] <= i * stride + block)
                 & (s[:, 1] >= j * stride) & (s[:, 1] <= j * stride + block))
            if m.sum() >= min_points:
                out.append(np.flatnonzero(m))
    return out


def test_block_channels_match_pointnet_definition(raw_tree):
    xyz, rgb, labels = raw_tree[1]["Area_3_office_1"]
    data, lab = room_to_blocks(xyz, rgb, labels, np.random.default_rng(0), n_points=1024)
    expect = expected_blocks(xyz)
    assert data.shape == (len(expect), 1024, 9) and data.dtype == np.float32
    shifted = xyz - xyz.min(0)
    room_max = shifted.max(0)
    for b, members in enumerate(expect):
        absolute = data[b, :, 6:9].astype(np.float64) * room_max  # channels 6–8 = xyz / max
        d = np.abs(absolute[:, None, :] - shifted[None, members, :]).sum(-1)
        which = members[d.argmin(1)]
        assert d.min(1).max() < 1e-4
        assert set(which) == set(members)  # < 1024 points: all of them, then duplicates
        np.testing.assert_array_equal(which[:len(members)], members)
        sx, sy = shifted[which, 0], shifted[which, 1]
        np.testing.assert_allclose(data[b, :, 0], sx - (sx.min() + 0.5), atol=1e-5)
        np.testing.assert_allclose(data[b, :, 1], sy - (sy.min() + 0.5), atol=1e-5)
        np.testing.assert_allclose(data[b, :, 2], shifted[which, 2], atol=1e-5)
        np.testing.assert_allclose(data[b, :, 3:6], rgb[which] / 255.0, atol=1e-6)
        np.testing.assert_array_equal(lab[b], labels[which])


def test_big_block_is_drawn_with_replacement_like_pointnet():
    rng = np.random.default_rng(1)
    xyz = rng.random((3000, 3)) * [0.9, 0.9, 1.0]  # one block of 3000 points
    data, _ = room_to_blocks(xyz, np.zeros((3000, 3)), np.zeros(3000), rng, n_points=2000)
    rows = np.unique(data[0, :, 6:9], axis=0)
    assert data.shape == (1, 2000, 9) and len(rows) < 2000  # duplicates from replacement
    data2, _ = room_to_blocks(xyz, np.zeros((3000, 3)), np.zeros(3000), rng, n_points=2000,
                              replace=False)
    assert len(np.unique(data2[0, :, 6:9], axis=0)) == 2000


def normalize_scale_pyg(pos):
    from torch_geometric.data import Data
    from torch_geometric.transforms import NormalizeScale

    return NormalizeScale()(Data(pos=torch.from_numpy(pos.copy()))).pos.numpy()


def test_prepare_npy_and_h5_agree_with_raw_and_pyg_preprocessing(raw_tree, tmp_path):
    root, rooms = raw_tree
    summary = prepare_s3dis(root, tmp_path, blocks=True, progress=False)
    assert summary["rooms"] == 7 and summary["points"] == 7 * 700 and summary["blocks"] > 0
    rows = np.load(tmp_path / "Area_2_office_1.npy")
    xyz, rgb, labels = rooms["Area_2_office_1"]
    assert rows.shape == (700, 7) and rows.dtype == np.float32
    np.testing.assert_allclose(rows[:, :3], xyz - xyz.min(0), atol=1e-5)  # PointNet's shift
    np.testing.assert_array_equal(rows[:, 6], labels)
    assert (tmp_path / "indoor3d_sem_seg_hdf5_data" / "ply_data_all_0.h5").is_file()
    assert not list(tmp_path.rglob(".*tmp*"))  # atomic writes left no temp files
    # one folder, both layouts: blocks for training, whole rooms for full-resolution eval
    assert find_s3dis(tmp_path).kind == "h5"
    assert find_s3dis(tmp_path, whole_rooms=True).kind == "npy"
    assert [name for name, _ in iter_rooms(tmp_path, [2])] == ["Area_2_office_1"]
    # the same blocks whichever layout they come from (blocks seeded by room name)
    ds_raw = S3DIS(root, "test", 5, position_norm="none")
    h5_dir = tmp_path / "indoor3d_sem_seg_hdf5_data"
    ds_h5 = S3DIS(h5_dir, "test", 5, position_norm="none")
    (tmp_path / "npy").mkdir()
    for p in tmp_path.glob("Area_*.npy"):
        p.rename(tmp_path / "npy" / p.name)
    ds_npy = S3DIS(tmp_path / "npy", "test", 5, position_norm="none")
    assert ds_h5.source.kind == "h5" and ds_npy.source.kind == "npy"
    assert set(ds_raw.rooms) == {"Area_5_office_1", "Area_5_hallway_6"}
    np.testing.assert_array_equal(ds_raw.data, ds_npy.data)
    np.testing.assert_allclose(ds_raw.data, ds_h5.data)
    np.testing.assert_array_equal(ds_raw.labels, ds_h5.labels)
    # official DeepGCN input: PyG NormalizeScale on channels 0–2, 3–8 untouched
    ds = S3DIS(h5_dir, "test", 5)
    x, y = ds[3]
    assert x.shape == (9, 4096) and x.dtype == torch.float32 and y.dtype == torch.int64
    raw = ds.data[3]
    # PyG's float32 mean rounds differently from our float64 one by ~1e-6
    np.testing.assert_allclose(x[:3].numpy().T, normalize_scale_pyg(raw[:, :3]), atol=2e-5)
    assert np.abs(x[:3].numpy()).max() < 1 and np.isclose(np.abs(x[:3].numpy()).max(), 0.999999)
    np.testing.assert_array_equal(x[3:].numpy().T, raw[:, 3:])


def write_pointnet_h5(folder, rooms_per_block, n_points=64, files=2):
    """A fixture in the published layout, written with h5py directly."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(3)
    data = rng.random((len(rooms_per_block), n_points, 9)).astype(np.float32)
    label = rng.integers(0, 13, (len(rooms_per_block), n_points)).astype(np.uint8)
    names = []
    for k, part in enumerate(np.array_split(np.arange(len(data)), files)):
        with h5py.File(folder / f"ply_data_all_{k}.h5", "w") as f:
            f["data"], f["label"] = data[part], label[part]
        names.append(f"indoor3d_sem_seg_hdf5_data/ply_data_all_{k}.h5")
    (folder / "all_files.txt").write_text("\n".join(names) + "\n")
    (folder / "room_filelist.txt").write_text("\n".join(rooms_per_block) + "\n")
    return data, label


def test_h5_layout_splits_area5_and_six_fold(tmp_path):
    rooms = [f"Area_{a}_office_{k}" for a in range(1, 7) for k in range(1, 3) for _ in range(a)]
    folder = tmp_path / "indoor3d_sem_seg_hdf5_data"
    data, label = write_pointnet_h5(folder, rooms)
    with pytest.raises(InputError, match="hold no whole rooms"):  # h5 alone: no full resolution
        list(iter_rooms(tmp_path, [5]))
    areas = np.array([int(r.split("_")[1]) for r in rooms])
    for fold in range(1, 7):
        test = S3DIS(tmp_path, "test", fold, n_points=64)
        train = S3DIS(tmp_path, "train", fold, n_points=64)
        assert len(test) == (areas == fold).sum() and len(train) == (areas != fold).sum()
        assert all(r.startswith(f"Area_{fold}_") for r in test.rooms)
        assert not any(r.startswith(f"Area_{fold}_") for r in train.rooms)
        np.testing.assert_array_equal(test.labels, label[areas == fold])
    ds = S3DIS(tmp_path, "train", 5, n_points=32, position_norm="none", seed=1)
    x, y = ds[0]
    assert x.shape == (9, 32) and y.shape == (32,)
    rows = {tuple(r) for r in data[areas != 5][0]}
    assert all(tuple(c) in rows for c in x.numpy().T)  # a subset of the stored block
    assert torch.equal(ds[0][0], x)  # deterministic
    ds.set_epoch(1)
    assert not torch.equal(ds[0][0], x)


def test_bad_inputs_are_one_line_errors(tmp_path, raw_tree):
    with pytest.raises(FormatError, match="not an S3DIS folder"):
        S3DIS(tmp_path)
    with pytest.raises(ConfigError, match="test_area"):
        S3DIS(raw_tree[0], test_area=7)
    folder = tmp_path / "h5"
    write_pointnet_h5(folder, ["Area_1_a", "Area_2_b"], files=1)
    (folder / "room_filelist.txt").write_text("Area_1_a\n")
    with pytest.raises(FormatError, match="fewer lines than h5 blocks"):
        read_block_h5(folder)
    with pytest.raises(ConfigError, match="n_points=5000"):
        write_pointnet_h5(tmp_path / "h5b", ["Area_1_a", "Area_5_b"], files=1)
        S3DIS(tmp_path / "h5b", n_points=5000)
    np.save(tmp_path / "Area_1_x.npy", np.zeros((4, 6)))
    with pytest.raises(FormatError, match="N×7"):
        list(iter_rooms(tmp_path))


def test_dataset_is_deterministic_and_labels_cover_classes(raw_tree):
    root, _ = raw_tree
    a = S3DIS(root, "train", 5, n_points=256, seed=3)
    b = S3DIS(root, "train", 5, n_points=256, seed=3)
    c = S3DIS(root, "train", 5, n_points=256, seed=4)
    np.testing.assert_array_equal(a.data, b.data)
    assert not np.array_equal(a.data, c.data)
    assert set(np.unique(a.labels)) == {2, 8, S3DIS_CLASSES.index("clutter")}
    assert len(a) + len(S3DIS(root, "test", 5, n_points=256)) == len(S3DIS(root, "all",
                                                                           n_points=256))


def test_interrupted_prepare_leaves_nothing_to_train_on(raw_tree, tmp_path, monkeypatch):
    """A run stopped at the third room (Ctrl-C, a bad room) must not leave rooms 1–2 where
    find_s3dis would take them for the whole data set."""
    import pointgcn.data.s3dis as s3dis_module

    root, _ = raw_tree
    real, calls = s3dis_module.read_raw_room, []

    def stop_at_third(room_dir, **kwargs):
        calls.append(room_dir)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(room_dir, **kwargs)

    monkeypatch.setattr(s3dis_module, "read_raw_room", stop_at_third)
    out = tmp_path / "prepared"
    with pytest.raises(KeyboardInterrupt):
        prepare_s3dis(root, out, progress=False)
    assert not out.exists() and not list(tmp_path.iterdir())  # no staging folder left either
    out.mkdir()  # an empty folder is fine, and stays empty when the run fails
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        prepare_s3dis(root, out, blocks=True, progress=False)
    assert not list(out.iterdir())
    with pytest.raises(FormatError, match="not an S3DIS folder"):
        find_s3dis(out)


def test_prepare_refuses_a_folder_with_files(raw_tree, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="exists and is not an empty folder") as e:
        prepare_s3dis(raw_tree[0], tmp_path, progress=False)
    assert "\n" not in str(e.value) and str(tmp_path) in str(e.value)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("bad,msg", [("strings", "not numbers"), ("nan", "NaN or infinite"),
                                     ("fractional", "fractional values")])
def test_h5_values_are_checked(tmp_path, bad, msg):
    """Every h5 loader reads through read_h5 + integer_ids: non-numbers, NaN/Inf and
    fractional label ids are one-line errors, never tracebacks or silent truncation."""
    rooms = [f"Area_{a}_office_1" for a in (1, 5)]
    folder = tmp_path / "indoor3d_sem_seg_hdf5_data"
    write_pointnet_h5(folder, rooms, files=1)
    path = folder / "ply_data_all_0.h5"
    with h5py.File(path, "r") as f:
        data, label = f["data"][...], f["label"][...]
    if bad == "strings":
        data = np.full(data.shape, b"a")
    elif bad == "nan":
        data[0, 3, 1] = np.nan
    else:
        label = label.astype(np.float32) + 0.6
    with h5py.File(path, "w") as f:
        f["data"], f["label"] = data, label
    with pytest.raises(FormatError, match=msg):
        read_block_h5(folder)
