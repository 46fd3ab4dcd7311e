"""PartNet sem_seg_h5: layout, class counts ("other" included), sampling, prepare."""
import h5py
import numpy as np
import pytest
import torch

from pointgcn.data.classes import PARTNET_PARTS, partnet_num_classes
from pointgcn.data.partnet import PartNetSemSeg, find_partnet, list_tasks, prepare_partnet
from pointgcn.errors import ConfigError, FormatError, InputError


def write_task(base, task, n_classes, sizes={"train": (3, 2), "val": (2,), "test": (2,)},
               n_points=500):
    """A task folder in the published layout (written with h5py; data_num as in PartNet)."""
    folder = base / task
    folder.mkdir(parents=True)
    rng = np.random.default_rng(len(task))
    out = {}
    for split, parts in sizes.items():
        names = []
        for k, b in enumerate(parts):
            data = rng.random((b, n_points, 3)).astype(np.float32)
            label = rng.integers(0, n_classes, (b, n_points)).astype(np.int64)
            with h5py.File(folder / f"{split}-{k:02d}.h5", "w") as f:
                f["data"], f["label_seg"] = data, label
                f["data_num"] = np.full(b, n_points, np.int64)
            names.append(f"{split}-{k:02d}.h5")
            out.setdefault(split, []).append((data, label))
        (folder / f"{split}_files.txt").write_text("\n".join(names) + "\n")
    return {s: (np.concatenate([d for d, _ in v]), np.concatenate([lab for _, lab in v]))
            for s, v in out.items()}


@pytest.fixture(scope="module")
def sem_seg(tmp_path_factory):
    base = tmp_path_factory.mktemp("partnet") / "sem_seg_h5"
    chair = write_task(base, "Chair-1", 6)
    synth = write_task(base, "Mug-2", 4, sizes={"train": (2,), "test": (1,)})
    return base, chair, synth


def test_published_counts_include_other():
    # PartNet's level files list 5 Chair-1 parts (head, back, arm, base, seat); its training
    # script uses len(lines) + 1 classes, which is the published table value
    assert partnet_num_classes("Chair", 1) == 6 == PARTNET_PARTS["Chair"][1]
    assert partnet_num_classes("Lamp", 3) == 41 and partnet_num_classes("Table", 2) == 42
    with pytest.raises(InputError):
        partnet_num_classes("Chair", 4)


def test_layout_splits_and_items(sem_seg):
    base, chair, _ = sem_seg
    assert find_partnet(base.parent) == base
    assert list_tasks(base) == [("Chair", 1), ("Mug", 2)]
    ds = PartNetSemSeg(base.parent, "Chair", 1, "train")
    assert len(ds) == 5 and ds.num_classes == 6
    x, y = ds[3]
    assert x.shape == (3, 500) and x.dtype == torch.float32 and y.dtype == torch.int64
    np.testing.assert_array_equal(x.numpy().T, chair["train"][0][3])
    np.testing.assert_array_equal(y.numpy(), chair["train"][1][3])
    assert len(PartNetSemSeg(base, "Chair", 1, "val")) == 2


def test_sampled_points_keep_their_labels(sem_seg):
    base, chair, _ = sem_seg
    ds = PartNetSemSeg(base, "Chair", 1, "test", n_points=100, seed=2)
    x, y = ds[1]
    pts, lab = chair["test"][0][1], chair["test"][1][1]
    rows = {tuple(p): l for p, l in zip(pts, lab)}
    assert x.shape == (3, 100) and len({tuple(p) for p in x.numpy().T}) == 100
    assert all(rows[tuple(p)] == l for p, l in zip(x.numpy().T, y.numpy()))
    assert torch.equal(ds[1][0], x)
    ds.set_epoch(3)
    assert not torch.equal(ds[1][0], x)


def test_unknown_category_counts_labels_of_all_splits(sem_seg):
    base, _, synth = sem_seg
    ds = PartNetSemSeg(base, "Mug", 2, "test")
    top = max(synth["train"][1].max(), synth["test"][1].max())
    assert ds.num_classes == top + 1  # Mug has no level 2 in PartNet


def test_prepare_copies_checks_and_subsamples(sem_seg, tmp_path):
    base, chair, _ = sem_seg
    summary = prepare_partnet(base, tmp_path, categories=["Chair"], n_points=50,
                              progress=False)
    assert summary == {"Chair-1/train": 5, "Chair-1/val": 2, "Chair-1/test": 2}
    ds = PartNetSemSeg(tmp_path, "Chair", 1, "train")
    assert len(ds) == 5 and ds.points.shape == (5, 50, 3)
    rows = {tuple(p): l for p, l in zip(chair["train"][0][2], chair["train"][1][2])}
    x, y = ds[2]
    assert all(rows[tuple(p)] == l for p, l in zip(x.numpy().T, y.numpy()))


def test_bad_inputs(sem_seg, tmp_path):
    base, _, _ = sem_seg
    with pytest.raises(InputError, match="no task Chair-3"):
        PartNetSemSeg(base, "Chair", 3)
    with pytest.raises(ConfigError, match="n_points"):
        PartNetSemSeg(base, "Chair", 1, n_points=501)
    with pytest.raises(FormatError, match="not a PartNet"):
        PartNetSemSeg(tmp_path, "Chair", 1)
    write_task(tmp_path, "Chair-1", 9, sizes={"train": (1,)})
    with pytest.raises(FormatError, match="labels outside 0–5"):
        PartNetSemSeg(tmp_path, "Chair", 1)
    (tmp_path / "Chair-1" / "train_files.txt").write_text("train-07.h5\n")
    with pytest.raises(FormatError, match="train-07.h5 is missing"):
        PartNetSemSeg(tmp_path, "Chair", 1)


def count_reads(monkeypatch):
    """Record (file name, keys) of every read_h5 call the PartNet module makes."""
    import pointgcn.data.partnet as pn

    reads, real = [], pn.read_h5

    def spy(path, keys, optional=None):
        reads.append((path.name, tuple(keys)))
        return real(path, keys, optional)

    monkeypatch.setattr(pn, "read_h5", spy)
    return reads


def test_labels_stay_compact_and_each_file_is_read_once(sem_seg, monkeypatch):
    base, chair, synth = sem_seg
    reads = count_reads(monkeypatch)
    ds = PartNetSemSeg(base, "Chair", 1, "train")
    assert ds.labels.dtype == np.uint8 and ds.labels.nbytes == 5 * 500  # not 8 bytes a label
    np.testing.assert_array_equal(ds.labels, chair["train"][1])
    assert ds[4][1].dtype == torch.int64
    np.testing.assert_array_equal(ds[4][1].numpy(), chair["train"][1][4])
    assert reads == [("train-00.h5", ("data", "label_seg")), ("train-01.h5", ("data", "label_seg"))]
    reads.clear()
    # a category outside PARTNET_PARTS needs every split's labels: the loaded split is reused,
    # the others are read label_seg only
    mug = PartNetSemSeg(base, "Mug", 2, "test")
    assert mug.num_classes == max(synth["train"][1].max(), synth["test"][1].max()) + 1
    assert reads == [("test-00.h5", ("data", "label_seg")), ("train-00.h5", ("label_seg",))]
    reads.clear()
    prepare_partnet(base, base.parent / "mug_copy", categories=["Mug"], progress=False)
    assert sorted(reads) == [("test-00.h5", ("data", "label_seg")),
                             ("train-00.h5", ("data", "label_seg"))]


def test_wide_label_ids_get_a_wider_type(tmp_path):
    write_task(tmp_path, "Thing-1", 300, sizes={"train": (2,)}, n_points=400)
    ds = PartNetSemSeg(tmp_path, "Thing", 1)
    assert ds.labels.dtype == np.int16 and ds.num_classes == int(ds.labels.max()) + 1 > 256


def test_interrupted_prepare_leaves_no_tasks(sem_seg, tmp_path, monkeypatch):
    import pointgcn.data.partnet as pn

    base, _, _ = sem_seg
    real = pn.read_split

    def stop_at_mug(task_dir, split):
        if task_dir.name == "Mug-2":  # Chair-1 is complete by then
            raise KeyboardInterrupt
        return real(task_dir, split)

    monkeypatch.setattr(pn, "read_split", stop_at_mug)
    with pytest.raises(KeyboardInterrupt):
        prepare_partnet(base, tmp_path / "out", progress=False)
    assert not list(tmp_path.iterdir())
