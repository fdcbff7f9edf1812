"""Frames per second of the inference loop at DAVIS resolution.

    python benchmarks/speed.py [--device cpu|cuda] [--size 480 854] [--frames 20] [--objects 2]

Randomly initialised weights (speed does not depend on them), synthetic frames, the
default bank options; the first frame (memorize only) is not timed. Prints fps.
"""
import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from model.inference.propagation import FrameItem, Propagation  # noqa: E402
from model.network.afburr import AFBURR  # noqa: E402
from utils.device import select_device  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--device', default='auto')
    parser.add_argument('--size', type=int, nargs=2, default=[480, 854], metavar=('H', 'W'))
    parser.add_argument('--frames', type=int, default=20)
    parser.add_argument('--objects', type=int, default=2)
    args = parser.parse_args()
    device = select_device(args.device)
    torch.manual_seed(0)
    height, width = args.size
    first_mask = np.zeros((height, width), np.uint8)
    for i in range(args.objects):
        first_mask[height // 4: 3 * height // 4, i * width // (args.objects + 1): (i + 1) * width // (args.objects + 1)] = i + 1
    loop = Propagation(AFBURR().to(device).eval())
    labels = tuple(range(1, args.objects + 1))
    items = (FrameItem(t, torch.rand(3, height, width), first_mask if t == 0 else None, labels if t == 0 else ())
             for t in range(args.frames))
    start = None
    for output in loop.run(items):
        output.probabilities.cpu()  # waits for the device
        if start is None:
            start = time.perf_counter()
    seconds = time.perf_counter() - start
    print(f'{device} {torch.get_num_threads()} threads, {height}x{width}, {args.objects} objects: '
          f'{(args.frames - 1) / seconds:.2f} fps over {args.frames - 1} frames')


if __name__ == '__main__':
    main()
