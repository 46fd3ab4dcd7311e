"""Every random stream derived from a run's one `seed`, each formula written once.

A run is reproducible when every generator it draws from is fixed by the seed and by where it
is used (epoch, sample, process), not by the order things happen in: a resumed run, another
DataLoader worker count or another process count must not shift any stream. Distinct purposes
get distinct formulas, so two streams never draw the same numbers by accident.
"""
from __future__ import annotations

import zlib

import numpy as np

# The validation split's key beside the seed. (`engine.distributed.epoch_order` seeds each
# epoch's order with [seed, epoch]: epoch 7's order shares this generator's state, which is
# harmless, as the two draw different things: a permutation of samples, a choice of groups.)
_VALIDATION_SPLIT = 7
_CALIBRATION_SUBSET = "calibration"


def item_rng(seed: int, *keys: int | str) -> np.random.Generator:
    """A generator fixed by the seed and an item's keys (epoch, index, name), so a sample is
    the same in any order, in any worker process and on every run."""
    parts = [int(seed)] + [k if isinstance(k, int) else zlib.crc32(k.encode()) for k in keys]
    return np.random.default_rng([p & 0xFFFFFFFF for p in parts])


def validation_split_rng(seed: int) -> np.random.Generator:
    """Which rooms / shapes of the training split are held out for validation."""
    return np.random.default_rng([seed, _VALIDATION_SPLIT])


def rank_seed(seed: int, rank: int) -> int:
    """torch's global RNG in process `rank` (stochastic dilation, dropout): each process draws
    its own numbers, and rank 0 uses the seed itself, so one process runs as without DDP."""
    return seed + 1000 * rank


def loader_seed(seed: int, epoch: int) -> int:
    """The DataLoader's own generator for an epoch: making an iterator must not draw from the
    global RNG, or a resumed run (which makes one more iterator) would drift."""
    return seed * 1000 + epoch


def calibration_subset_rng(seed: int) -> np.random.Generator:
    """Which validation points a temperature is fitted on when there are too many to keep."""
    return item_rng(seed, _CALIBRATION_SUBSET)
