"""Train AFB-URR: level 0 pretrains on static images, level 1 trains on DAVIS 2017, level 2 on YouTube-VOS 2018.

    python train.py --level 0 --dataset /data/pretrain --log
    python train.py --level 1 --dataset /data/DAVIS2017 --resume pretrain --new --log
    torchrun --nproc_per_node 4 train.py --level 2 --dataset /data/YouTubeVOS/train --resume pretrain --new --logging

Without --resume both ResNet-50s start from torchvision's ImageNet weights. Resuming a
run without --new continues it with the flags saved in its checkpoint; a flag given
again with another value is used, with a warning.
"""
import argparse
import sys
from dataclasses import fields, replace

from utils.cli import OneLineParser, print_line, quiet_interrupts, run_command

with quiet_interrupts():  # Ctrl-C while torch loads: one line and status 130, no traceback
    from dataset.training import TRAINING_LEVELS, training_dataset, training_level
    from model.training.config import TrainingConfig, continued_config
    from model.training.trainer import train
    from utils.checkpoint import read_checkpoint
    from utils.common_flags import add_device_flags, add_resume_flag, add_workers_flag, chosen_device
    from utils.device import select_device
    from utils.download import resolve_checkpoint
    from utils.files import make_writable_folder

DEFAULTS = {field.name: field.default for field in fields(TrainingConfig)}


def level_default(name):
    """A clip setting's default for --help: the levels' values (one where they agree)."""
    return ' / '.join(sorted({str(getattr(level, name)) for level in TRAINING_LEVELS.values()}))


def parse_args(argv=None):
    """The flags given on the command line only (absent ones are not in the namespace)."""
    parser = OneLineParser(description=__doc__.split('\n\n')[0], argument_default=argparse.SUPPRESS)
    add_device_flags(parser)
    parser.add_argument('--dataset', required=True, help='dataset root: ' + ', '.join(
        f'{level.dataset_root} ({number})' for number, level in TRAINING_LEVELS.items()))
    parser.add_argument('--level', type=int, required=True, choices=sorted(TRAINING_LEVELS), help=', '.join(
        f'{number}: {level.subject}' for number, level in TRAINING_LEVELS.items()))
    parser.add_argument('--seed', type=int,
                        help=f'random seed; negative takes it from the clock (default: {DEFAULTS["seed"]}, as released); '
                             'resuming without --new keeps the checkpoint\'s')
    parser.add_argument('--log', '--logging', dest='log', action='store_true',
                        help='write checkpoints and TensorBoard scalars under logs/level<L>_<YYYYmmdd-HHMMSS>/; '
                             'under torchrun spell it --logging (torchrun rejects --log as an ambiguous '
                             'abbreviation of its own --log-dir and --logs-specs)')
    parser.add_argument('--lr', type=float, help=f'AdamW learning rate (default: {DEFAULTS["lr"]})')
    parser.add_argument('--lu', type=float,
                        help=f'weight of the uncertainty term in the loss (default: {DEFAULTS["lu"]})')
    add_resume_flag(parser, 'checkpoint to start from instead of the ImageNet weights')
    parser.add_argument('--new', action='store_true',
                        help='with --resume: take only the weights and start a new run at epoch 0')
    parser.add_argument('--scheduler-step', type=int,
                        help=f'halve the learning rate every this many epochs (default: {DEFAULTS["scheduler_step"]})')
    parser.add_argument('--total-epochs', '--total-epoch', dest='total_epochs', type=int,
                        help=f'train until this many epochs are done (default: {DEFAULTS["total_epochs"]})')
    parser.add_argument('--budget', type=int, help=f'feature bank size, in features (default: {DEFAULTS["budget"]})')
    parser.add_argument('--obj-n', type=int,
                        help=f'objects per clip, background included (default: {level_default("obj_n")})')
    parser.add_argument('--clip-n', type=int, help=f'frames per clip (default: {level_default("clip_n")})')
    parser.add_argument('--output-size', type=int,
                        help=f'side of the square training crops, a multiple of 16 (default: {level_default("output_size")})')
    parser.add_argument('--max-iters', type=int,
                        help='at most this many clips per epoch (per process under torchrun); '
                             'default: one clip per video or image')
    add_workers_flag(parser, 'DataLoader worker processes, per process', DEFAULTS['workers'])
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision (float16 autocast and gradient scaling); CUDA only')
    return vars(parser.parse_args(argv))


def run_config(given):
    """(TrainingConfig, checkpoint dict or None) for the given flags; notes on stderr for a continued run."""
    given = dict(given)
    given['device'], flag = chosen_device(given.pop('device', None), given.pop('gpu', None))
    select_device(given['device'], flag)  # a GPU asked for but absent is named by the flag that asked
    config = TrainingConfig(**given)  # checks every given flag before a checkpoint is downloaded or read
    if config.log:
        make_writable_folder(config.log_root)  # where run folders go; checked before a checkpoint is read
    if config.resume is None:
        return config, None
    given['resume'] = resolve_checkpoint(config.resume)
    checkpoint = read_checkpoint(given['resume'])
    saved = None if config.new else checkpoint.get('flags')
    if not saved:
        return replace(config, resume=given['resume']), checkpoint
    config, notes = continued_config(given, saved)
    for note in notes:
        print_line(f'warning: {note}')
    return config, checkpoint


def run(given):
    config, checkpoint = run_config(given)
    # The level's clip settings, for the flags neither given nor saved: the run's checkpoints save them.
    config = replace(config, **training_level(config.level).clip_settings(config.output_size, config.clip_n,
                                                                          config.obj_n))
    dataset = training_dataset(config.level, config.dataset, output_size=config.output_size,
                               clip_n=config.clip_n, obj_n=config.obj_n)
    train(config, dataset, checkpoint)


def main(argv=None):
    given = parse_args(argv)
    # An interrupted Trainer says which checkpoints are kept; before it runs, none of this run's are written.
    return run_command(lambda: run(given), 'training had not started; run the same command again')

if __name__ == '__main__':
    sys.exit(main())
