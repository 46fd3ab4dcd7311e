"""Process-group helpers: the same code runs alone or under `torchrun --nproc_per_node=P`.

One process per device: on GPUs rank r of a node uses cuda:LOCAL_RANK and NCCL, on the CPU
gloo (`backend_for`). Each rank trains on its shard of every epoch's permutation, metrics
are summed across ranks on the model's device (NCCL reduces GPU tensors only), and only
rank 0 writes files.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.distributed as dist

from ..errors import InputError
from .device import DEVICE, device_name, resolve_device


@dataclass
class Dist:
    """This process's place: its rank among `world` processes and the device it computes on."""
    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def backend_for(device: torch.device) -> str:
    """NCCL for GPUs, gloo for the CPU (NCCL cannot reduce host tensors)."""
    return "nccl" if device.type == "cuda" else "gloo"


def init_distributed(device: str | None = "auto") -> Dist:
    """This process's `Dist` for the `device` request (see engine/device.py); under torchrun
    the process group on that device's backend."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(device=resolve_device(device))
    name = device_name(device)
    if name.startswith("cuda:"):
        raise InputError("{device} {name} under torchrun would put every process on one GPU; "
                         "give {device} cuda (process r uses cuda:LOCAL_RANK)", device=DEVICE,
                         name=name)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    place = resolve_device(name, local_rank)
    if place.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise InputError(f"LOCAL_RANK {local_rank} but this machine has "
                             f"{torch.cuda.device_count()} GPU(s): one process per GPU")
        torch.cuda.set_device(place)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend_for(place))
    return Dist(dist.get_rank(), dist.get_world_size(), place)


def shutdown(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def sum_array(d: Dist, array: np.ndarray) -> np.ndarray:
    """Element-wise sum over ranks (confusion matrices, intersections/unions, loss totals)."""
    if not d.enabled:
        return array
    t = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float64)).to(d.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.cpu().numpy().astype(array.dtype)


def allreduce_mean(d: Dist, tensors: list[torch.Tensor]) -> None:
    """Average tensors (on the model's device) in place over ranks with one all-reduce of
    their concatenation."""
    if not d.enabled or not tensors:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    flat /= d.world
    offset = 0
    for t in tensors:
        t.copy_(flat[offset:offset + t.numel()].view_as(t))
        offset += t.numel()


def broadcast_tensors(d: Dist, tensors) -> None:
    """Rank 0's values of `tensors` (e.g. BatchNorm statistics) on every rank."""
    if d.enabled:
        for t in tensors:
            dist.broadcast(t.data, src=0)


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
