"""torchrun support: this process's rank, the process group, and gathering results on rank 0."""
import contextlib
import os
from dataclasses import dataclass

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


def gather_on_main(value):
    """Every process's `value` as a list (rank order) on rank 0; None on other ranks."""
    if not (dist.is_available() and dist.is_initialized()):
        return [value]
    gathered = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(value, gathered, dst=0)
    return gathered
