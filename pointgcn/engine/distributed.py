"""Process-group helpers: the same code runs alone or under `torchrun --nproc_per_node=P`.

gloo on CPU, nccl on GPU. Each rank trains on its shard of every epoch's permutation, metrics
are summed across ranks, and only rank 0 writes files.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass
class Dist:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def init_distributed() -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
    return Dist(dist.get_rank(), dist.get_world_size())


def shutdown(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def sum_array(d: Dist, array: np.ndarray) -> np.ndarray:
    """Element-wise sum over ranks (confusion matrices, intersections/unions, loss totals)."""
    if not d.enabled:
        return array
    t = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float64))
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.numpy().astype(array.dtype)


def gather_objects(d: Dist, obj) -> list:
    if not d.enabled:
        return [obj]
    out = [None] * d.world
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(d: Dist, obj):
    if not d.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool, d: Dist,
                pad: bool = True) -> np.ndarray:
    """This rank's sample order for an epoch: a permutation seeded by (seed, epoch) dealt
    round-robin over ranks (as DistributedSampler). Training pads to a multiple of the world
    size so every rank takes the same number of steps; evaluation does not pad, so no sample
    is counted twice."""
    order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)
    if d.world > 1:
        if pad:
            order = np.concatenate([order, order[:(-n) % d.world]])
        order = order[d.rank::d.world]
    return order
