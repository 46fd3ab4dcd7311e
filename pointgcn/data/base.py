"""What the engine reads from a data set, and the views of one that keep that interface.

A data set gives `(features (C, N), labels)` items, its `task` and `class_names`, and takes
`set_epoch(epoch)`: each item's random draws (point subsets, augmentation) are fixed by
(seed, epoch, index), so the epoch is how training sees new draws while any epoch can be
replayed exactly. The splits `data.build` makes from one data set are `Subset`s of it.
"""
from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import torch
from torch.utils.data import Dataset


@runtime_checkable
class PointDataset(Protocol):
    task: str
    class_names: list[str]

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]: ...

    def set_epoch(self, epoch: int) -> None: ...


class Subset(Dataset):
    """Items `indices` of `dataset`, with its task, classes and epoch."""

    def __init__(self, dataset: PointDataset, indices: Sequence[int]):
        self.dataset, self.indices = dataset, [int(i) for i in indices]
        self.task, self.class_names = dataset.task, dataset.class_names

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        return self.dataset[self.indices[i]]

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)


class EpochZeroSubset(Subset):
    """Items of a data set shared with training, always drawn as in epoch 0, whatever epoch
    the data set is at (so "best" compares the same validation samples every epoch)."""

    def __getitem__(self, i: int):
        epoch = self.dataset.epoch
        self.dataset.set_epoch(0)
        try:
            return self.dataset[self.indices[i]]
        finally:
            self.dataset.set_epoch(epoch)

    def set_epoch(self, epoch: int) -> None:
        """Nothing to do: its items are always epoch 0's."""


class SampleList(Dataset):
    """In-memory `(features, labels)` samples with the data-set interface (tests, benchmarks,
    a user's own tensors); nothing is drawn per epoch."""

    def __init__(self, items, class_names, task: str):
        self.items, self.class_names, self.task = list(items), list(class_names), task

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        return self.items[index]

    def set_epoch(self, epoch: int) -> None:
        """Nothing to do: fixed samples."""
