"""Train AFB-URR: level 0 pretrains on static images, level 1 trains on DAVIS 2017, level 2 on YouTube-VOS 2018.

    python train.py --level 0 --dataset /data/pretrain --log
    python train.py --level 1 --dataset /data/DAVIS2017 --resume logs/level0_.../model/best.pth --new --log
    torchrun --nproc_per_node 4 train.py --level 2 --dataset /data/YouTubeVOS/train --resume ... --new --logging

Without --resume both ResNet-50s start from torchvision's ImageNet weights.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from model.trainer import TrainingConfig, train  # noqa: E402
from utils.device import device_name, select_device  # noqa: E402
from utils.errors import UserError  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--gpu', type=int, default=0,
                        help='CUDA device index; -1 trains on the CPU (default: %(default)s)')
    parser.add_argument('--device', default=None,
                        help='cpu, cuda or cuda:N; overrides --gpu (under torchrun CUDA means cuda:LOCAL_RANK)')
    parser.add_argument('--dataset', required=True,
                        help='dataset root: the pretrain folder (level 0), DAVIS 2017 (1) '
                             'or YouTube-VOS 2018 train (2)')
    parser.add_argument('--level', type=int, required=True, choices=(0, 1, 2),
                        help='0: pretrain on static images, 1: DAVIS 2017, 2: YouTube-VOS 2018')
    parser.add_argument('--seed', type=int, default=-1,
                        help='random seed; negative takes it from the clock (default: %(default)s, as released); '
                             'resuming without --new keeps the checkpoint\'s')
    parser.add_argument('--log', '--logging', dest='log', action='store_true',
                        help='write checkpoints and TensorBoard scalars under logs/level<L>_<YYYYmmdd-HHMMSS>/; '
                             'under torchrun spell it --logging (torchrun rejects --log as an ambiguous '
                             'abbreviation of its own --log-dir and --logs-specs)')
    parser.add_argument('--lr', type=float, default=1e-5, help='AdamW learning rate (default: %(default)s)')
    parser.add_argument('--lu', type=float, default=0.5,
                        help='weight of the uncertainty term in the loss (default: %(default)s)')
    parser.add_argument('--resume', default=None,
                        help='checkpoint to continue from (model, optimizer, epoch, best loss, random states); '
                             'replaces the ImageNet initialisation')
    parser.add_argument('--new', action='store_true',
                        help='with --resume: take only the weights and start a new run at epoch 0')
    parser.add_argument('--scheduler-step', type=int, default=25,
                        help='halve the learning rate every this many epochs (default: %(default)s)')
    parser.add_argument('--total-epochs', '--total-epoch', dest='total_epochs', type=int, default=100,
                        help='train until this many epochs are done (default: %(default)s)')
    parser.add_argument('--budget', type=int, default=300000,
                        help='feature bank size, in features (default: %(default)s)')
    parser.add_argument('--obj-n', type=int, default=3,
                        help='objects per clip, background included (default: %(default)s)')
    parser.add_argument('--clip-n', type=int, default=6, help='frames per clip (default: %(default)s)')
    parser.add_argument('--output-size', type=int, default=400,
                        help='side of the square training crops, a multiple of 16 (default: %(default)s)')
    parser.add_argument('--max-iters', type=int, default=None,
                        help='at most this many clips per epoch (per process under torchrun); '
                             'default: one clip per video or image')
    parser.add_argument('--workers', type=int, default=2,
                        help='DataLoader worker processes, per process (default: %(default)s)')
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision (float16 autocast and gradient scaling); CUDA only')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        device = select_device(device_name(args.device, args.gpu), '--device' if args.device else '--gpu')
        config = TrainingConfig(
            dataset=args.dataset, level=args.level, device=device, seed=args.seed, log=args.log, lr=args.lr,
            lu=args.lu, resume=args.resume, new=args.new, scheduler_step=args.scheduler_step,
            total_epochs=args.total_epochs, budget=args.budget, obj_n=args.obj_n, clip_n=args.clip_n,
            output_size=args.output_size, max_iters=args.max_iters, workers=args.workers, amp=args.amp)
        train(config)
    except UserError as error:
        print(f'error: {error}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
