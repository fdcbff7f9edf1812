"""torchrun support: this process's rank, the process group, and the few collectives eval and training need.

Without torchrun (no process group) each collective is the single-process identity."""
import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class ProcessInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self):
        return self.rank == 0

    @property
    def distributed(self):
        return self.world_size > 1


def process_info():
    """Rank, world size and local rank as torchrun sets them (a single process without torchrun)."""
    return ProcessInfo(int(os.environ.get('RANK', 0)), int(os.environ.get('WORLD_SIZE', 1)),
                       int(os.environ.get('LOCAL_RANK', 0)))


@contextlib.contextmanager
def process_group(backend='gloo'):
    """Join torchrun's process group for the duration (nothing to do for a single process)."""
    info = process_info()
    if not info.distributed or dist.is_initialized():
        yield info
        return
    dist.init_process_group(backend=backend)
    try:
        yield info
    finally:
        dist.destroy_process_group()


def _joined():
    return dist.is_available() and dist.is_initialized()


def broadcast_from_main(value):
    """Rank 0's `value` (any picklable object) on every process."""
    if not _joined():
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def gather_from_all(value):
    """[value of rank 0, value of rank 1, ...] (any picklable objects) on every process."""
    if not _joined():
        return [value]
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def sum_over_processes(numbers, device):
    """Element-wise sums of a list of numbers over all processes."""
    if not _joined():
        return list(numbers)
    total = torch.tensor(numbers, dtype=torch.float64, device=device)
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total.tolist()
