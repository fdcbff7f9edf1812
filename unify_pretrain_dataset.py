"""Convert one static-image set (MSRA10K, ECSSD, PASCAL-S, PASCALVOC2012, COCO) into the
pretraining layout: DST/JPEGImages/NAME/*.jpg|png and DST/Annotations/NAME/*.png.

    python unify_pretrain_dataset.py --name ECSSD --src /data/ECSSD --dst /data/pretrain --worker 8

Existing outputs are kept, so an interrupted run can simply be started again.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from dataset.unify import SETS, load_palette, unify  # noqa: E402
from utils.errors import UserError  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--name', required=True, choices=SETS, help='which set --src holds')
    parser.add_argument('--src', required=True, help='the downloaded set, as its archive unpacks')
    parser.add_argument('--dst', required=True, help='output root (shared by all five sets)')
    parser.add_argument('--palette', default=None,
                        help='indexed PNG whose palette the masks get (default: the DAVIS palette, '
                             'as in assets/mask_palette.png)')
    parser.add_argument('--worker', type=int, default=min(8, os.cpu_count() or 1),
                        help='parallel processes (default: %(default)s)')
    args = parser.parse_args(argv)
    if args.worker < 1:
        parser.error('--worker must be at least 1')
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        palette = load_palette(args.palette)
        summary = unify(args.name, args.src, args.dst, palette=palette, workers=args.worker)
    except UserError as error:
        print(f'error: {error}', file=sys.stderr)
        return 2
    for line in summary.report():
        print(line)
    return 0


if __name__ == '__main__':
    sys.exit(main())
