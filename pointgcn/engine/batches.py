"""Batches of an epoch: which samples go together, and the loader that fetches them.

An epoch's order comes from `distributed.epoch_order` (seeded by (seed, epoch), this rank's
share); `split_batches` cuts it into batches. Training either drops an incomplete last batch
(`last_batch: drop`, as the official DeepGCN code) or keeps it unless it holds a single
sample (`keep`, as the SGAS search code): BatchNorm cannot normalise one pooled vector per
channel.
"""
from __future__ import annotations

import numpy as np
import torch

LAST_BATCH = ("drop", "keep")


def collate(items):
    feats = torch.stack([torch.as_tensor(f, dtype=torch.float32) for f, _ in items])
    labels = torch.stack([torch.as_tensor(y, dtype=torch.int64) for _, y in items])
    return feats, labels


def split_batches(order: np.ndarray, size: int, last_batch: str | None = None
                  ) -> list[np.ndarray]:
    """Index batches of `order`; `last_batch` None keeps every sample (evaluation)."""
    parts = [order[s:s + size] for s in range(0, len(order), size)]
    if last_batch == "drop" and parts and len(parts[-1]) < size:
        parts.pop()
    elif last_batch == "keep" and len(parts) > 1 and len(parts[-1]) < 2:
        parts.pop()
    return parts


def batch_loader(dataset, batches: list[np.ndarray], *, seed: int, workers: int = 0,
                 pin_memory: bool = False) -> torch.utils.data.DataLoader:
    """A loader over the given index batches (pinned host memory for a GPU)."""
    # Its own generator: creating an iterator must not draw from the global RNG, or a
    # resumed run (which creates one more iterator) would drift from an uninterrupted one.
    generator = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(dataset, batch_sampler=[b.tolist() for b in batches],
                                       collate_fn=collate, num_workers=workers,
                                       generator=generator, pin_memory=pin_memory)
