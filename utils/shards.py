"""Splitting a run's videos into shards that run as independent processes, without a process group.

    shard = parse_shard('2/4')           # --shard K/N, 1-based
    shard.select(videos)                 # every N-th video from the K-th: videos[1::4]
    shard_from_slurm(os.environ)         # (shard, the line saying why) inside a Slurm array task, else None

Every shard reads the same list in the same order and takes its own positions, so N shards cover each video
exactly once, whatever machine runs each. Inside a Slurm job array (sbatch --array) the task's place in the
array gives the shard: the array's task ids may start at any number (--array=1-4, 0-15:4), so the shard is
(SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN) / SLURM_ARRAY_TASK_STEP + 1 of SLURM_ARRAY_TASK_COUNT; ids that
are no such range (--array=1,3,7) are refused, since some positions would belong to no task.
"""
import re
from dataclasses import dataclass

from utils.errors import UserError

_SHARD = re.compile(r'\s*(\d+)\s*/\s*(\d+)\s*')
SLURM_VARIABLES = ('SLURM_ARRAY_TASK_ID', 'SLURM_ARRAY_TASK_MIN', 'SLURM_ARRAY_TASK_MAX', 'SLURM_ARRAY_TASK_STEP',
                   'SLURM_ARRAY_TASK_COUNT')


@dataclass(frozen=True)
class Shard:
    index: int   # K, from 1
    count: int   # N

    def select(self, items):
        """The items of this shard, in their order: every count-th from the index-th."""
        return list(items)[self.index - 1::self.count]

    def __str__(self):
        return f'{self.index}/{self.count}'


def shard_problem(text):
    """Why `text` is not a shard K/N with 1 <= K <= N, or None."""
    match = _SHARD.fullmatch(text)
    if match is None:
        return 'expected K/N, this process\'s shard K (from 1) of N, e.g. 2/4'
    index, count = int(match[1]), int(match[2])
    if not 1 <= index <= count:
        return f'K must be 1 to N ({count}); shards count from 1'
    return None


def parse_shard(text):
    """The Shard of a valid --shard value (see shard_problem)."""
    index, count = _SHARD.fullmatch(text).groups()
    return Shard(int(index), int(count))


def _integer(environ, name):
    text = environ.get(name)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise UserError(f'{name}={text!r}: not a task id; pass --shard K/N instead') from None


def shard_from_slurm(environ):
    """(Shard, one line saying which Slurm variables chose it) inside a Slurm array task, else None.

    Without SLURM_ARRAY_TASK_MIN (set by every Slurm that sets SLURM_ARRAY_TASK_COUNT) ids count from 0.
    """
    task, count = _integer(environ, 'SLURM_ARRAY_TASK_ID'), _integer(environ, 'SLURM_ARRAY_TASK_COUNT')
    if task is None or count is None:
        return None
    first = _integer(environ, 'SLURM_ARRAY_TASK_MIN')
    last = _integer(environ, 'SLURM_ARRAY_TASK_MAX')
    step = _integer(environ, 'SLURM_ARRAY_TASK_STEP') or 1
    first = 0 if first is None else first
    given = ', '.join(f'{name}={environ[name]}' for name in SLURM_VARIABLES if name in environ)
    position, off_step = divmod(task - first, step)
    if count < 1 or off_step or not 0 <= position < count or (last is not None and last != first + (count - 1) * step):
        raise UserError(f'the Slurm array ({given}) is not a range of task ids, so its tasks cannot split the videos '
                        f'between them; submit it as --array=0-{max(count, 1) - 1} (or 1-{max(count, 1)}), or pass '
                        f'--shard K/N to each task')
    shard = Shard(position + 1, count)
    return shard, (f'shard {shard} chosen by the Slurm array ({given}); pass --shard K/N to choose another, '
                   f'or --shard 1/1 to run every video in this task')


def process_share(items, shard, rank=0, world_size=1):
    """The items this process runs: its shard's (all of them without a shard), split between the processes of a
    torchrun job (every world_size-th from its rank)."""
    mine = list(items) if shard is None else shard.select(items)
    return mine[rank::world_size]
