"""The process group of a run: one process per device, set up from torchrun's environment.

The same code runs as one CPU process (tests, `make train`) and as torchrun + DDP on GPUs, so
every helper here degrades to a no-op at world size 1 and the trainer never branches on it.
Teardown is a collective too: a rank that destroys its group while another still has a
collective in flight with it makes the other abort, so `teardown` passes a barrier first.

torch.distributed.nn.functional is imported here, before any process group exists, on purpose:
its functions take `group=group.WORLD` as a default argument, evaluated at its first import.
DistributedDataParallel imports it lazily, after init_process_group, so without this import the
default argument would hold the default group for the life of the interpreter and
destroy_process_group could not free it: the backend's threads and sockets (gloo's worker and
socket-loop threads, NCCL's watchdog) would outlive teardown into interpreter exit, whose
teardown of them races with the exit (a rank aborting with "terminate called without an active
exception" after its work is done).
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.distributed.nn.functional  # noqa: F401 - see the module docstring: before any process group


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()


def init_distributed(force_cpu: bool = False) -> Dist:
    """torchrun's env (RANK, WORLD_SIZE, LOCAL_RANK) -> process group: NCCL on GPUs, gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available() and not force_cpu
    device = torch.device(f"cuda:{local}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo", device_id=device if cuda else None)
    return Dist(rank, world, local, device)


def teardown(d: Dist) -> None:
    """Leave the process group once every rank is past its last collective.

    Release every DistributedDataParallel wrapper first. Its reducer holds the group from C++, and
    a group whose last holder is the reducer is destroyed, gloo's threads joined, with the GIL
    held, when the wrapper goes; a gloo worker thread still dropping its last work item needs the
    GIL for that, so the two wait on each other for ever. Destroyed here instead, by
    destroy_process_group, the group is released from Python, which lets the GIL go first.
    """
    if d.world_size > 1 and dist.is_initialized():
        gc.collect()  # a released wrapper caught in a reference cycle goes now, not after the group
        dist.barrier()
        dist.destroy_process_group()


def all_gather_object(obj, d: Dist) -> list:
    if d.world_size == 1:
        return [obj]
    out = [None] * d.world_size
    dist.all_gather_object(out, obj)
    return out


def all_reduce_sum(t: torch.Tensor, d: Dist) -> torch.Tensor:
    """Sum of t over ranks, in place (t itself at world size 1)."""
    if d.world_size > 1:
        dist.all_reduce(t)
    return t
