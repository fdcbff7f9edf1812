"""The flags eval.py, train.py and unify_pretrain_dataset.py share, each defined, explained and checked once."""
import argparse

from utils.cli import at_least, checked
from utils.device import device_name
from utils.download import RELEASED_CHECKPOINTS

CHECKPOINT_CHOICES = 'a path, an http(s) URL, or a released name: ' + ' / '.join(RELEASED_CHECKPOINTS)


def add_device_flags(parser, added=None):
    """The released --gpu, and the added --device that overrides it (in the group `added` when given)."""
    parser.add_argument('--gpu', type=int,
                        help='GPU index; -1 runs on the CPU (default: GPU 0 if CUDA is present, else the CPU)')
    (added or parser).add_argument('--device',
                        help='auto, cpu, cuda or cuda:N; overrides --gpu (under torchrun, cuda means cuda:LOCAL_RANK)')


def chosen_device(device=None, gpu=None):
    """(device name, the flag that chose it) for the values of --device and --gpu: errors about the
    device name the flag the user gave."""
    return device_name(device, gpu), '--device' if device else '--gpu'


def add_resume_flag(parser, purpose):
    """--resume CKPT; `purpose` says what the checkpoint is for in this script."""
    parser.add_argument('--resume', help=f'{purpose}: {CHECKPOINT_CHOICES}')


def add_workers_flag(parser, what, default, minimum=0, aliases=()):
    """--workers N (and `aliases`), at least `minimum`. A parser whose argument_default is SUPPRESS (train.py:
    only the given flags) keeps an absent --workers out of its namespace; `default` is then only shown."""
    given_only = parser.argument_default is argparse.SUPPRESS
    parser.add_argument('--workers', *aliases, dest='workers', type=checked(int, at_least(minimum)),
                        default=argparse.SUPPRESS if given_only else default, help=f'{what} (default: {default})')
