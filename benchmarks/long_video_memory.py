"""Peak memory against video length: the feature bank bounds it, so a 3,000-frame video
should peak within a few percent of a 300-frame one once the bank is full.

    python -m benchmarks.long_video_memory [--lengths 300 3000] [--size 48 80] [--budget 600] [--merge-thres 1]

Each length runs in a fresh process (so peaks don't mix) on the CPU with randomly
initialised weights (memory does not depend on the weights), streaming frames from a
generator, never holding the video. Merging is off by default (threshold 1: a new feature
merges only when its cosine similarity exceeds 1) so that every frame appends features: the bank fills within a few
dozen frames and then evicts on every frame, the worst case for memory. Prints the
peak resident memory per length.
"""
import argparse
import json
import os
import resource
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def synthetic_frames(n_frames, height, width):
    """A square drifting over noise, one frame at a time."""
    import numpy as np
    import torch
    rng = np.random.RandomState(0)
    for t in range(n_frames):
        frame = rng.randint(0, 256, size=(3, height, width)).astype(np.float32) / 255
        x = int(t * 0.7) % (width - height // 2)
        frame[:, height // 4: 3 * height // 4, x: x + height // 2] = 0.9
        yield torch.from_numpy(frame)


def measure(n_frames, height, width, budget, merge_thres):
    """Segment one synthetic video; return the peak RSS (MiB) and the final bank sizes."""
    import numpy as np
    import torch
    from model.inference.options import BankOptions
    from model.inference.propagation import FrameItem, Propagation
    from model.network.afburr import AFBURR
    torch.manual_seed(0)
    first_mask = np.zeros((height, width), np.uint8)
    first_mask[height // 4: 3 * height // 4, : height // 2] = 1
    loop = Propagation(AFBURR().eval(), options=BankOptions(budget, 0.1, merge_thres))
    items = (FrameItem(t, frame, first_mask if t == 0 else None, (1,) if t == 0 else ())
             for t, frame in enumerate(synthetic_frames(n_frames, height, width)))
    for _ in loop.run(items):
        pass
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {'frames': n_frames, 'peak_rss_mib': round(peak_mib, 1), 'bank_sizes': loop.bank.sizes(),
            'class_budget': loop.bank.class_budget, 'removed': loop.bank.removed_n}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--lengths', type=int, nargs='+', default=[300, 3000])
    parser.add_argument('--size', type=int, nargs=2, default=[48, 80], metavar=('H', 'W'))
    parser.add_argument('--budget', type=int, default=600)
    parser.add_argument('--merge-thres', type=float, default=1.0)
    parser.add_argument('--child', type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, *args.size, args.budget, args.merge_thres)))
        return
    results = []
    for n_frames in args.lengths:
        out = subprocess.run([sys.executable, '-m', 'benchmarks.long_video_memory', '--child', str(n_frames),
                              '--size', *map(str, args.size), '--budget', str(args.budget),
                              '--merge-thres', str(args.merge_thres)],
                             cwd=REPO, capture_output=True, text=True, check=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(results[-1], flush=True)
    base = results[0]['peak_rss_mib']
    for r in results[1:]:
        print(f'{r["frames"]} frames peak {r["peak_rss_mib"]} MiB vs {results[0]["frames"]} frames {base} MiB: '
              f'{100 * (r["peak_rss_mib"] / base - 1):+.1f}%')


if __name__ == '__main__':
    main()
