"""`build_datasets`: every split keeps the data-set interface the engine reads (items, task,
class names, epoch), and the epoch reaches training draws but never validation ones."""
import pytest
import torch

from conftest import rooms_config, shapes_config
from pointgcn.data.base import EpochZeroSubset, PointDataset, Subset
from pointgcn.data.build import build_datasets
from pointgcn.data.partnet import PartNetSemSeg


def parts_config(root):
    return {"seed": 0, "data": {"dataset": "partnet", "root": str(root / "sem_seg_h5"),
                                "category": "Chair", "n_points": 128}}


@pytest.mark.parametrize("config", [rooms_config, shapes_config, parts_config])
def test_every_split_has_the_data_set_interface(synth_root, config):
    data = build_datasets(config(synth_root), ("train", "val", "test"))
    for split in (data.train, data.val, data.test):
        assert isinstance(split, PointDataset), type(split)
        assert split.task == data.task and list(split.class_names) == data.class_names
        x, _ = split[0]
        assert x.shape[0] == data.in_channels


def test_part_names_come_from_the_task_folder(synth_root):
    data = build_datasets(parts_config(synth_root), ("val",))
    assert data.class_names == ["other", "chair_head", "chair_back", "chair_arm", "chair_seat",
                                "chair_base"]


def test_epoch_reaches_the_draws_of_training_items_only(synth_root):
    """ModelNet training shapes are augmented per (seed, epoch, index): the split passes the
    epoch on; validation shapes (another, plain view of the same files) stay put."""
    data = build_datasets(shapes_config(synth_root))
    train0, val0 = data.train[0][0], data.val[0][0]
    data.train.set_epoch(1)
    data.val.set_epoch(1)
    assert not torch.equal(data.train[0][0], train0) and torch.equal(data.val[0][0], val0)
    data.train.set_epoch(0)
    assert torch.equal(data.train[0][0], train0)


def test_epoch_zero_subset_draws_as_in_epoch_zero_and_leaves_the_epoch(synth_root):
    """Validation items carved from a data set that training moves through the epochs."""
    full = PartNetSemSeg(synth_root / "sem_seg_h5", "Chair", 1, "train", n_points=64, seed=1)
    first = full[2][0]
    train, val = Subset(full, [0, 1]), EpochZeroSubset(full, [2])
    train.set_epoch(4)
    assert full.epoch == 4 and not torch.equal(full[2][0], first)
    assert torch.equal(val[0][0], first) and full.epoch == 4
    val.set_epoch(7)
    assert full.epoch == 4
