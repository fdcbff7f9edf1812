"""The feature bank's settings and the working size: the one place their defaults and valid ranges are written.

eval.py's and train.py's flags, the Python API and the bank itself all read them
from here; eval.py's level table (dataset/levels.py) holds the per-level values.
"""
import math
import numbers
from dataclasses import dataclass, fields

from utils.errors import UserError


# The shorter side frames of your own videos are resized to (--size, Segmenter's size): the released
# checkpoints were trained on 480p frames, so larger ones cost compute without gaining accuracy.
WORKING_SIZE = 480
MIN_WORKING_SIZE = 16  # one stride of the network's coarsest features


def working_size_problem(value):
    """Why `value` is no working size (a whole number of pixels), or None."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < MIN_WORKING_SIZE:
        return f'must be a whole number of pixels, at least {MIN_WORKING_SIZE}'
    return None


def size_flag_problem(value):
    """Why a --size flag value is refused (a working size, or -1 for the native size), or None."""
    why = None if value == -1 else working_size_problem(value)
    return None if why is None else f'{why}, or -1 for the native size'


def working_size_of_flag(value):
    """The working size a --size flag value asks for: WORKING_SIZE when not given (None), None (the native
    size) for -1."""
    if value is None:
        return WORKING_SIZE
    return None if value == -1 else value


SIZE_FLAG_HELP = (f'resize frames so that their shorter side is N pixels (never enlarged; masks are written at '
                  f'the video\'s size); -1: the native size (default {WORKING_SIZE})')


def _check_budget(value):
    if not value > 0:
        return 'must be a positive number of features'
    return None


def _check_update_rate(value):
    if not 0 < value <= 1:  # NaN fails too
        return 'must be in (0, 1]'
    return None


def _check_merge_thres(value):
    if not -1 <= value <= 1:  # a cosine similarity; NaN fails too
        return 'must be in [-1, 1] (a cosine similarity)'
    return None


_CHECKS = {'budget': _check_budget, 'update_rate': _check_update_rate, 'merge_thres': _check_merge_thres}


def bank_option_problem(name, value):
    """Why `value` cannot be the bank option `name` ('budget', 'update_rate', 'merge_thres'), or None."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):  # the API takes any object
        return f'must be a number, not {type(value).__name__}'
    if isinstance(value, float) and math.isnan(value):
        return 'must be a number, not NaN'
    return _CHECKS[name](value)


@dataclass(frozen=True)
class BankOptions:
    """budget: features over all objects (each gets budget // objects, x0.8 for two banks);
    update_rate: how far a merged entry moves towards the new features;
    merge_thres: cosine similarity above which a new feature merges into its closest entry."""
    budget: int = 300000
    update_rate: float = 0.1
    merge_thres: float = 0.95

    def __post_init__(self):
        for field in fields(self):
            problem = bank_option_problem(field.name, getattr(self, field.name))
            if problem is not None:
                raise UserError(f'{field.name}={getattr(self, field.name)!r}: {problem}')


DEFAULT_BANK_OPTIONS = BankOptions()
