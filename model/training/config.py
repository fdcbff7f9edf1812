"""A training run's settings: the one place their defaults and valid ranges are written.

train.py's flags read their defaults from TrainingConfig (the clip settings' from the
level table, dataset.training.TRAINING_LEVELS), and a run's checkpoints
save the flags that define it (RUN_FLAGS), so a resume continues with them.
"""
from dataclasses import dataclass

from model.inference.options import DEFAULT_BANK_OPTIONS, bank_option_problem
from utils.errors import UserError

# The flags that define a run: saved in its checkpoints and taken from there when it is continued.
RUN_FLAGS = ('level', 'dataset', 'lr', 'lu', 'scheduler_step', 'total_epochs', 'budget', 'obj_n', 'clip_n',
             'output_size', 'max_iters', 'workers', 'amp')


def flag_name(field):
    return '--' + field.replace('_', '-')


@dataclass(frozen=True)
class TrainingConfig:
    """One training run; the fields are train.py's flags (defaults as released where it had the flag)."""
    dataset: str
    level: int
    device: str = 'auto'  # 'auto', 'cpu', 'cuda' or 'cuda:N'; under torchrun CUDA means cuda:LOCAL_RANK
    seed: int = -1  # negative: taken from the clock
    log: bool = False
    lr: float = 1e-5
    lu: float = 0.5
    resume: str | None = None  # a local checkpoint file (train.py resolves names and URLs)
    new: bool = False
    scheduler_step: int = 25
    total_epochs: int = 100
    budget: int = DEFAULT_BANK_OPTIONS.budget
    # None: the level's (dataset.training.TRAINING_LEVELS); train.py sets them before the run starts.
    obj_n: int | None = None
    clip_n: int | None = None
    output_size: int | None = None
    max_iters: int | None = None  # clips per epoch and process; None: the whole dataset
    workers: int = 2
    amp: bool = False
    log_root: str = 'logs'

    def __post_init__(self):
        budget_problem = bank_option_problem('budget', self.budget)
        checks = [
            (self.clip_n is None or self.clip_n >= 2, f'--clip-n {self.clip_n}: a clip needs at least 2 frames '
                               f'(the first is memorized, the others are segmented)'),
            (self.obj_n is None or self.obj_n >= 2, f'--obj-n {self.obj_n}: needs at least 2 (the background and one object)'),
            (self.output_size is None or (self.output_size >= 16 and self.output_size % 16 == 0),
             f'--output-size {self.output_size}: must be a positive multiple of 16 (training clips are not padded)'),
            (self.lr > 0, f'--lr {self.lr}: must be positive'),
            (self.lu >= 0, f'--lu {self.lu}: must not be negative'),
            (budget_problem is None, f'--budget {self.budget}: {budget_problem}'),
            (self.scheduler_step >= 1, f'--scheduler-step {self.scheduler_step}: must be at least 1'),
            (self.total_epochs >= 0, f'--total-epochs {self.total_epochs}: must not be negative'),
            (self.max_iters is None or self.max_iters >= 1, f'--max-iters {self.max_iters}: must be at least 1'),
            (self.workers >= 0, f'--workers {self.workers}: must be at least 0'),  # as the flag's parse check
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(message)

    def run_flags(self):
        """The flags that define this run, as plain data for its checkpoints."""
        return {name: getattr(self, name) for name in RUN_FLAGS}


def continued_config(given, saved_flags):
    """The config of a run continued from a checkpoint: its saved flags, with the flags given now on top
    (except --lr: the checkpoint's optimizer state keeps the run's learning rate).

    Returns (TrainingConfig, notes): one note per given flag that differs from the saved one.
    """
    saved = {name: value for name, value in saved_flags.items() if name in RUN_FLAGS}
    notes = []
    for name in RUN_FLAGS:
        # Training a run on to another total is what a resume is for: no note for that one.
        if name in given and name in saved and given[name] != saved[name] and name != 'total_epochs':
            kept = name == 'lr'
            notes.append(f'{flag_name(name)} {given[name]} differs from the run\'s saved {saved[name]}; '
                         + ('the run keeps its optimizer\'s learning rate (--new starts a new run)' if kept
                            else f'using {given[name]}'))
    values = {**saved, **{name: value for name, value in given.items() if name != 'lr' or 'lr' not in saved}}
    return TrainingConfig(**values), notes
