"""Frames per second and peak memory of an HD video at its native size and at the working size (--size).

    python -m benchmarks.working_size [--device cpu|cuda] [--size 1080 1920] [--working-sizes -1 480]
                                      [--objects 2] [--frames 4] [--precision fp32]

Each working size runs in a fresh process (so peaks don't mix) through the Python API
(Segmenter(size=...): the frame resized, the model and bank loop, the labels brought back to
the frame's size), on the same synthetic video as benchmarks.speed (golden recipe weights:
speed does not depend on them). Frames are read from a memory-mapped file one at a time.
The first frame (memorized only) and the first segmented frame (warm-up) are not timed.
Peak memory is the process's peak resident set on the CPU, the peak allocated by torch on CUDA.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from benchmarks.speed import write_inputs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def measure(inputs, device_name, size, precision):
    """In a child process: segment the inputs at working size `size` (-1: native); return fps and peak memory."""
    import resource

    import numpy as np
    import torch
    from model.inference.segmenter import Segmenter
    from model.network.afburr import AFBURR
    device = torch.device(device_name)
    frames = np.load(os.path.join(inputs, 'frames.npy'), mmap_mode='r')
    first_mask = np.load(os.path.join(inputs, 'first_mask.npy'))
    model = AFBURR()
    model.load_state_dict(torch.load(os.path.join(inputs, 'weights.pth')), strict=True)
    session = Segmenter(model.to(device), precision=precision, size=None if size == -1 else size).session()
    stamps = []
    for t, frame in enumerate(frames):
        labels = session.step(np.array(frame), first_mask if t == 0 else None, probabilities=False)
        stamps.append(time.perf_counter())
    if device.type == 'cuda':
        peak_mib = torch.cuda.max_memory_allocated(device) / 2 ** 20
    else:
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {'fps': (len(stamps) - 2) / (stamps[-1] - stamps[1]), 'peak_mib': peak_mib,
            'labels_size': list(labels.shape), 'threads': torch.get_num_threads()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--device', default='cpu', help='cpu, cuda or cuda:N (default cpu)')
    parser.add_argument('--size', type=int, nargs=2, default=[1080, 1920], metavar=('H', 'W'))
    parser.add_argument('--working-sizes', type=int, nargs='+', default=[-1, 480],
                        help='shorter sides to run at; -1: the native size (default -1 480)')
    parser.add_argument('--objects', type=int, default=2)
    parser.add_argument('--frames', type=int, default=4, help='video length; the first two are not timed (default 4)')
    parser.add_argument('--precision', default='fp32', choices=['fp32', 'tf32', 'bf16', 'fp16'])
    parser.add_argument('--child', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        job = json.loads(args.child)
        print(json.dumps(measure(job['inputs'], job['device'], job['size'], job['precision'])))
        return
    if args.frames < 3:
        parser.error('--frames must be at least 3 (two are not timed)')
    height, width = args.size
    with tempfile.TemporaryDirectory() as folder:
        write_inputs(folder, args.frames, height, width, args.objects)
        for size in args.working_sizes:
            job = {'inputs': folder, 'device': args.device, 'size': size, 'precision': args.precision}
            out = subprocess.run([sys.executable, '-m', 'benchmarks.working_size', '--child', json.dumps(job)],
                                 cwd=REPO, capture_output=True, text=True)
            if out.returncode != 0:
                raise SystemExit(f'measurement failed (working size {size}):\n{out.stderr[-3000:]}')
            result = json.loads(out.stdout.strip().splitlines()[-1])
            what = 'native' if size == -1 else f'--size {size}'
            print(f'{args.device}, {height}x{width}, {args.objects} objects, {args.precision}, {what}: '
                  f'{result["fps"]:.3f} fps, peak {result["peak_mib"]:.0f} MiB, labels {result["labels_size"]}, '
                  f'{result["threads"]} threads', flush=True)


if __name__ == '__main__':
    main()
