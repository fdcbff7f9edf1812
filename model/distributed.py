"""Training under torchrun: which process this is, its process group, and the few collectives training needs.

Without torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK) everything here is a
no-op for a single process, so the training loop has one code path.
"""
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from utils.errors import UserError

TORCHRUN_VARIABLES = ('RANK', 'WORLD_SIZE', 'LOCAL_RANK')


@dataclass(frozen=True)
class ProcessInfo:
    """This process's place among the training processes (rank 0 of 1 without torchrun)."""
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    distributed: bool = False

    @property
    def is_main(self):
        """Rank 0: the process that prints, logs and writes checkpoints."""
        return self.rank == 0


def process_from_env(environ=None):
    """The ProcessInfo torchrun describes in the environment, or a single process when it is absent."""
    environ = os.environ if environ is None else environ
    if not all(name in environ for name in TORCHRUN_VARIABLES):
        return ProcessInfo()
    values = {}
    for name in TORCHRUN_VARIABLES:
        try:
            values[name] = int(environ[name])
        except ValueError:
            raise UserError(f'environment variable {name}={environ[name]!r} is not an integer; '
                            f'it is set by torchrun, leave it unset to train in one process') from None
    return ProcessInfo(values['RANK'], values['WORLD_SIZE'], values['LOCAL_RANK'], distributed=True)


def start_process_group(device):
    """Join the torchrun process group: NCCL for CUDA devices, gloo for the CPU."""
    if device.type == 'cuda':
        torch.cuda.set_device(device)
    dist.init_process_group('nccl' if device.type == 'cuda' else 'gloo')


def stop_process_group():
    if dist.is_initialized():
        dist.destroy_process_group()


def broadcast_from_main(value, process):
    """Rank 0's `value` (any picklable object) on every process."""
    if not process.distributed:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def gather_from_all(value, process):
    """[value of rank 0, value of rank 1, ...] on every process."""
    if not process.distributed:
        return [value]
    gathered = [None] * process.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def sum_over_processes(numbers, process, device):
    """Element-wise sums of a list of numbers over all processes."""
    if not process.distributed:
        return list(numbers)
    total = torch.tensor(numbers, dtype=torch.float64, device=device)
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total.tolist()
