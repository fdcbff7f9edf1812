"""Convert one static-image set (MSRA10K, ECSSD, PASCAL-S, PASCALVOC2012, COCO) into the
pretraining layout: DST/JPEGImages/NAME/*.jpg|png and DST/Annotations/NAME/*.png.

    python unify_pretrain_dataset.py --name ECSSD --src /data/ECSSD --dst /data/pretrain --workers 8

Existing outputs are kept, so an interrupted run can simply be started again.
"""
import os
import sys

from utils.cli import OneLineParser, quiet_interrupts, run_command

with quiet_interrupts():  # Ctrl-C while torch loads: one line and status 130, no traceback
    from dataset.layouts import PRETRAIN_SETS
    from dataset.unify import load_palette, unify
    from utils.common_flags import add_workers_flag


def parse_args(argv=None):
    parser = OneLineParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--name', required=True, choices=PRETRAIN_SETS, help='which set --src holds')
    parser.add_argument('--src', required=True, help='the downloaded set, as its archive unpacks')
    parser.add_argument('--dst', required=True, help='output root (shared by all five sets)')
    parser.add_argument('--palette', default=None,
                        help='indexed PNG whose palette the masks get (default: the DAVIS palette, '
                             'as in assets/mask_palette.png)')
    add_workers_flag(parser, 'parallel processes', default=min(8, os.cpu_count() or 1), minimum=1,
                     aliases=('--worker',))  # --worker: the released spelling
    return parser.parse_args(argv)


def convert(args):
    summary = unify(args.name, args.src, args.dst, palette=load_palette(args.palette), workers=args.workers)
    for line in summary.report():
        print(line)


def main(argv=None):
    args = parse_args(argv)
    return run_command(lambda: convert(args), 'converted images are kept; rerun the same command to continue')

if __name__ == '__main__':
    sys.exit(main())
