"""Running a trainer as several processes under ``torchrun --nproc_per_node=N`` (gloo on CPU, NCCL on CUDA).

Every helper is a no-op in a plain single process, so a trainer calls them unconditionally. Rank 0 writes
the run's files; every rank trains on its own views; the ranks agree, once per step, on when to stop, so
none is left waiting in a collective the others have stopped calling.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterable, Iterator

import torch
import torch.distributed as dist
from torch import nn


def dist_info() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)``; ``(0, 1, 0)`` without a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0))
    return 0, 1, 0


def maybe_init_dist(device: torch.device) -> bool:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1); True when this call created it."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        if device.type == "cuda" and device.index is not None:
            torch.cuda.set_device(device)  # NCCL's barrier and collectives use the current device
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return True
    return False


@contextlib.contextmanager
def process_group(device: torch.device) -> Iterator[None]:
    """Inside, the process group torchrun describes exists; it is destroyed after if this created it."""
    own = maybe_init_dist(device)
    try:
        yield
    finally:
        if own and dist.is_initialized():
            dist.destroy_process_group()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def local_cuda_device() -> torch.device:
    """This process's GPU: ``cuda:LOCAL_RANK`` under torchrun, else the current one."""
    local = os.environ.get("LOCAL_RANK")
    return torch.device("cuda", int(local)) if local is not None else torch.device("cuda")


def max_over_ranks(*values: float, device: torch.device) -> tuple[float, ...]:
    """Each value's maximum over the ranks (one all-reduce); the values themselves in a single process.

    Ranks agree on a stop this way: a flag as 0.0/1.0 is set on every rank when it is set on any, and an
    elapsed time becomes the longest, so a ``--minutes`` budget ends at the same step everywhere.
    """
    if dist_info()[1] <= 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return tuple(float(v) for v in t.cpu())


def broadcast_state(*modules: nn.Module) -> None:
    """Copy rank 0's parameters and buffers into every other rank's ``modules`` (in place)."""
    if dist_info()[1] <= 1:
        return
    with torch.no_grad():
        for m in modules:
            for t in m.state_dict().values():
                dist.broadcast(t, src=0)


def average_gradients(params: Iterable[torch.Tensor]) -> None:
    """Replace every ``.grad`` by its mean over the ranks (one all-reduce of all of them).

    What DistributedDataParallel does after backward, for trainers it does not fit (an R1 penalty's
    ``autograd.grad``, several forwards of one network per backward). Parameters without a gradient are
    skipped: the same ones on every rank, since every rank runs the same graph.
    """
    world = dist_info()[1]
    if world <= 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    for g, v in zip(grads, flat.split([g.numel() for g in grads])):
        g.copy_(v.view_as(g))
