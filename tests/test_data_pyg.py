"""`data.dataset: pyg`: PyG's ModelNet / S3DIS processed offline from tiny raw fixtures in their
published layouts, sampled and split as our loaders do, trained for an epoch by `pointgcn train`;
nothing downloaded, nothing written into the data folder."""
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml

from pointgcn.data.build import build_datasets
from pointgcn.errors import ConfigError, InputError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = ["bathtub", "bed", "chair", "desk", "dresser", "monitor", "night_stand", "sofa",
           "table", "toilet"]  # what PyG's ModelNet checks for in raw/


def box_off(path, a, b, c):
    """A closed box with half extents (a, b, c) in ModelNet's OFF layout (triangles)."""
    v = [(x * a, y * b, z * c) for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)]
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    tris = [t for q in quads for t in ((q[0], q[1], q[2]), (q[0], q[2], q[3]))]
    lines = ["OFF", f"{len(v)} {len(tris)} 0"] + [f"{x} {y} {z}" for x, y, z in v]
    path.write_text("\n".join(lines + [f"3 {i} {j} {k}" for i, j, k in tris]) + "\n")


def extents(ci, i):
    return 0.5 + 0.2 * ci, 1.0 + 0.05 * i, 2.0 - 0.1 * ci


@pytest.fixture
def modelnet_raw(tmp_path):
    root = tmp_path / "ModelNet10"
    for ci, name in enumerate(CLASSES):
        for split, ids in (("train", (1, 2)), ("test", (3,))):
            folder = root / "raw" / name / split
            folder.mkdir(parents=True)
            for i in ids:
                box_off(folder / f"{name}_{i:04d}.off", *extents(ci, i))
    return root


def tree(root):
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


def cfg(root, **data):
    return {"seed": 0, "data": {"dataset": "pyg", "pyg": "ModelNet10", "root": str(root),
                                "n_points": 64, "val_fraction": 0.15, **data}}


def test_modelnet_raw_files_processed_offline_into_our_cache(modelnet_raw):
    before = tree(modelnet_raw)
    b = build_datasets(cfg(modelnet_raw, position_norm="none", augment=False),
                       splits=("train", "val", "test"))
    assert tree(modelnet_raw) == before  # nothing written in the user's folder
    assert b.class_names == CLASSES and b.task == "classification" and b.in_channels == 3
    assert len(b.train) + len(b.val) == 20 and len(b.test) == 10
    for split in (b.train, b.test):
        for i in range(len(split)):
            pts, label = split[i]
            assert pts.shape == (3, 64)
            # the item's points lie on its class's box (extents known from its label)
            ci = int(label)
            on_box = [np.abs(pts.numpy().T / extents(ci, s)).max(1) for s in (1, 2, 3)]
            assert any(np.allclose(m, 1.0, atol=1e-5) for m in on_box)


def test_same_seed_same_items_and_normalised(modelnet_raw):
    a = build_datasets(cfg(modelnet_raw))
    b = build_datasets(cfg(modelnet_raw))
    for i in range(len(a.train)):
        (pa, la), (pb, lb) = a.train[i], b.train[i]
        assert (pa == pb).all() and la == lb
    for i in range(len(a.val)):  # not augmented: on the unit sphere, as `pointgcn classify`
        pts = a.val[i][0].double()
        assert torch.allclose(pts.mean(1), torch.zeros(3, dtype=torch.float64), atol=1e-5)
        assert abs(pts.norm(dim=0).max() - 1.0) < 1e-5
    a.train.set_epoch(1)
    assert not (a.train[0][0] == b.train[0][0]).all()  # augmentation draws per epoch


def test_missing_raw_files_refused_without_download(modelnet_raw):
    import shutil
    shutil.rmtree(modelnet_raw / "raw" / "sofa")
    before = tree(modelnet_raw)
    with pytest.raises(InputError, match="nothing is downloaded"):
        build_datasets(cfg(modelnet_raw))
    assert tree(modelnet_raw) == before
    with pytest.raises(ConfigError, match="data.pyg must be one of"):
        build_datasets(cfg(modelnet_raw, pyg="Planetoid"))


def s3dis_raw(tmp_path):
    """PyG's S3DIS layout: PointNet h5 blocks (6 of 100 points), a room name per block."""
    raw = tmp_path / "s3dis" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    data = rng.random((6, 100, 9)).astype(np.float32)
    label = rng.integers(0, 13, (6, 100)).astype(np.uint8)
    with h5py.File(raw / "ply_data_all_0.h5", "w") as f:
        f["data"], f["label"] = data, label
    (raw / "all_files.txt").write_text("indoor3d_sem_seg_hdf5_data/ply_data_all_0.h5\n")
    rooms = ["Area_1_office_1", "Area_1_office_1", "Area_2_hall_1", "Area_5_wc_1",
             "Area_3_lobby_1", "Area_5_office_2"]
    (raw / "room_filelist.txt").write_text("\n".join(rooms) + "\n")
    return raw.parent, data, label


def s3dis_cfg(root):
    return {"seed": 0, "data": {"dataset": "pyg", "pyg": "S3DIS", "root": str(root),
                                "n_points": 64, "val_fraction": 0.25, "position_norm": "none"}}


def test_s3dis_h5_blocks_as_segmentation(tmp_path):
    """pos 0:3, x 3:9, labels per point; test blocks are those of Area_<test_area>."""
    root, data, label = s3dis_raw(tmp_path)
    b = build_datasets(s3dis_cfg(root), splits=("train", "val", "test"))
    assert b.task == "segmentation" and b.in_channels == 9 and len(b.class_names) == 13
    assert len(b.train) + len(b.val) == 4 and len(b.test) == 2
    pts, labels = b.test[1]  # the second Area_5 block: rows of block 5, labels alongside
    rows = {tuple(r): int(y) for r, y in zip(data[5], label[5])}
    assert pts.shape == (9, 64) and labels.shape == (64,)
    assert all(rows[tuple(p)] == int(y) for p, y in zip(pts.numpy().T, labels))


def test_pointgcn_train_one_epoch_on_pyg_modelnet(modelnet_raw, tmp_path):
    run = tmp_path / "run"
    config = {**cfg(modelnet_raw), "name": "pyg",
              "model": {"n_blocks": 2, "channels": 8, "k": 4, "fusion_channels": 16,
                        "prediction": [16], "dropout": 0.0},
              "train": {"epochs": 1, "batch_size": 8, "lr": 0.01}}
    path = tmp_path / "pyg.yaml"
    path.write_text(yaml.safe_dump(config))
    before = tree(modelnet_raw)
    out = subprocess.run([sys.executable, "-m", "apps.cli", "train", str(path), "--out",
                          str(run), "--no-progress"], capture_output=True, text=True, cwd=ROOT,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert (run / "checkpoints" / "last.pt").is_file()
    assert tree(modelnet_raw) == before


def test_shapenet_txt_parts_with_its_own_val_split(tmp_path):
    """PyG's ShapeNet layout: <category id>/<shape>.txt rows `x y z nx ny nz part`, split lists
    in train_test_split/; its val split is ours, its part ids (0–49) our classes."""
    from torch_geometric.datasets import ShapeNet
    raw = tmp_path / "shapenet" / "raw"
    for cat_id in ShapeNet.category_ids.values():
        (raw / cat_id).mkdir(parents=True)
    chair = ShapeNet.category_ids["Chair"]
    rng = np.random.default_rng(1)
    shapes, lists = {}, {"train": [], "val": [], "test": []}
    for i, split in enumerate(["train"] * 3 + ["val", "test"]):
        rows = np.concatenate([rng.integers(0, 999, (50, 6)) / 1000,
                               rng.integers(12, 16, (50, 1))], axis=1)
        np.savetxt(raw / chair / f"s{i}.txt", rows, fmt="%.3f")
        shapes[f"s{i}"] = rows
        lists[split].append(f"shape_data/{chair}/s{i}")
    (raw / "train_test_split").mkdir()
    for split, names in lists.items():
        (raw / "train_test_split" / f"shuffled_{split}_file_list.json").write_text(
            str(names).replace("'", '"'))
    b = build_datasets({"seed": 0, "data": {"dataset": "pyg", "pyg": "ShapeNet", "root":
                                            str(raw.parent), "category": "Chair",
                                            "normals": True, "n_points": 40,
                                            "position_norm": "none"}},
                       splits=("train", "val", "test"))
    assert b.task == "segmentation" and b.in_channels == 6
    assert len(b.class_names) == 50 and b.class_names[12:16] == [f"Chair_{j}" for j in range(4)]
    assert (len(b.train), len(b.val), len(b.test)) == (3, 1, 1)
    pts, labels = b.test[0]
    rows = {tuple(np.round(r[:6], 3)): int(r[6]) for r in shapes["s4"]}
    assert pts.shape == (6, 40)
    assert all(rows[tuple(np.round(p.astype(np.float64), 3))] == int(y)
               for p, y in zip(pts.numpy().T, labels))


def test_a_broken_raw_file_is_one_line_exit_2(modelnet_raw, tmp_path):
    (modelnet_raw / "raw" / "sofa" / "train" / "sofa_0001.off").write_text("OFF\n8 12 0\n1 2\n")
    path = tmp_path / "pyg.yaml"
    path.write_text(yaml.safe_dump({**cfg(modelnet_raw), "model": {"n_blocks": 2},
                                    "train": {"epochs": 1}}))
    before = tree(modelnet_raw)
    out = subprocess.run([sys.executable, "-m", "apps.cli", "train", str(path), "--out",
                          str(tmp_path / "run"), "--no-progress"], capture_output=True,
                         text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 2 and out.stderr.startswith("error: ")
    assert "could not process these raw files" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert tree(modelnet_raw) == before and not (tmp_path / "run").exists()
    mine = (modelnet_raw / "raw").resolve()  # no cache folder of these raw files was kept
    assert not [p for p in (Path(os.environ["POINTGCN_CACHE"]) / "pyg").glob("*")
                if (p / "raw").resolve() == mine]


def test_eval_of_pyg_s3dis_scores_its_blocks(tmp_path):
    """No whole rooms to vote over: the per-block protocol only, equal to a direct count."""
    from pointgcn.engine.evaluator import evaluate
    from pointgcn.engine.predictor import TorchPredictor
    from pointgcn.models import build_model
    root, _, _ = s3dis_raw(tmp_path)
    cfg = s3dis_cfg(root)
    torch.manual_seed(0)
    model = build_model({"n_blocks": 2, "channels": 8, "k": 4, "fusion_channels": 16,
                         "prediction": [16], "in_channels": 9, "n_classes": 13}).eval()
    out = evaluate(cfg, TorchPredictor(model), progress=False)
    assert "full_resolution" not in out
    test = build_datasets(cfg, splits=("test",)).test
    hits = total = 0
    for i in range(len(test)):
        feats, labels = test[i]
        pred = model(feats[None]).argmax(1)[0]
        hits, total = hits + int((pred == labels).sum()), total + len(labels)
    assert out["per_block"]["oa"] == pytest.approx(hits / total)
