"""Agreement of the reduced precisions with fp32, and their speed, on the demo video and a synthetic one.

    python -m benchmarks.precision [--device cpu|cuda] [--precisions bf16 fp16]
                                   [--synthetic-size 480 854] [--synthetic-frames 10] [--objects 2]

Both videos are segmented with the golden recipe weights (seed 7: the released checkpoints
cannot be downloaded here) once in fp32 and once in each reduced precision. Per precision
and video it prints:
- mean IoU of the label maps against fp32's (per frame after the first and per object,
  background included, then averaged);
- the same on the decisive pixels only, where fp32's two best logits differ by more than a
  margin (0.01, the golden tests' rule, then 0.05 and 0.1), with the share of such pixels:
  random weights leave most pixels near-ties that any rounding flips, so these say whether
  the precision changes a clear decision;
- the largest absolute difference of any probability;
- seconds per frame of each run (one run each; benchmarks/speed.py compares speed properly).
"""
import argparse
import os
import time

import numpy as np
import torch

from dataset.frame_stream import stream_video_file
from model.inference.propagation import FrameItem, Propagation
from model.network.afburr import AFBURR
from tests.support.recipe import recipe_state_dict
from tests.support.synth import moving_shapes
from utils.device import select_device

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DEMO_VIDEO = os.path.join(REPO, 'assets', 'demo', 'demo.mp4')
DEMO_MASK = os.path.join(REPO, 'assets', 'demo', 'demo_first_mask.png')
WEIGHTS_SEED = 7
DECISIVE_LOGIT_MARGINS = (0.01, 0.05, 0.1)


def demo_items():
    return stream_video_file(DEMO_VIDEO, DEMO_MASK)


def synthetic_items(n_frames, height, width, n_objects):
    frames, masks = moving_shapes(3, n_frames, height, width, n_objects)
    labels = tuple(range(1, n_objects + 1))
    return [FrameItem(t, torch.from_numpy(f).permute(2, 0, 1).float().div(255), masks[0] if t == 0 else None,
                      labels if t == 0 else ()) for t, f in enumerate(frames)]


def segment(model, items, precision):
    """(scores, probabilities) (obj_n, h, w) of every frame after the first, and seconds per frame."""
    loop = Propagation(model, precision=precision)
    outputs, start = [], time.perf_counter()
    for output in loop.run(items):
        if output.item.index > 0:
            outputs.append((output.scores.cpu(), output.probabilities.cpu()))
    return outputs, (time.perf_counter() - start) / max(len(outputs), 1)


def mean_iou(reference, other, where):
    """Mean over objects (background included) of the IoU of two label maps, on the pixels `where`."""
    ious = []
    for c in range(int(max(reference.max(), other.max())) + 1):
        a, b = (reference == c) & where, (other == c) & where
        union = (a | b).sum().item()
        if union:
            ious.append((a & b).sum().item() / union)
    return ious


def agreement(reference, other):
    """Mean IoU over all pixels, {margin: (mean IoU, share)} over decisive pixels, max probability difference."""
    all_ious, largest = [], 0.0
    decisive_ious = {margin: [] for margin in DECISIVE_LOGIT_MARGINS}
    decisive_shares = {margin: [] for margin in DECISIVE_LOGIT_MARGINS}
    for (scores, p), (other_scores, q) in zip(reference, other):
        top2 = scores.topk(2, dim=0).values
        labels_p, labels_q = scores.argmax(dim=0), other_scores.argmax(dim=0)
        all_ious += mean_iou(labels_p, labels_q, torch.ones_like(labels_p, dtype=torch.bool))
        for margin in DECISIVE_LOGIT_MARGINS:
            decisive = (top2[0] - top2[1]) > margin
            decisive_ious[margin] += mean_iou(labels_p, labels_q, decisive)
            decisive_shares[margin].append(decisive.float().mean().item())
        largest = max(largest, (p - q).abs().max().item())
    decisive = {margin: (np.mean(decisive_ious[margin]) if decisive_ious[margin] else float('nan'),
                         np.mean(decisive_shares[margin])) for margin in DECISIVE_LOGIT_MARGINS}
    return np.mean(all_ious), decisive, largest


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--precisions', nargs='+', choices=['tf32', 'bf16', 'fp16'])
    parser.add_argument('--synthetic-size', type=int, nargs=2, default=[480, 854], metavar=('H', 'W'))
    parser.add_argument('--synthetic-frames', type=int, default=10)
    parser.add_argument('--objects', type=int, default=2, help='objects in the synthetic video (default 2)')
    args = parser.parse_args()
    device = select_device(args.device)
    precisions = args.precisions or (['bf16'] if device.type == 'cpu' else ['tf32', 'fp16', 'bf16'])
    model = AFBURR()
    model.load_state_dict(recipe_state_dict(WEIGHTS_SEED), strict=True)
    model = model.to(device).eval()

    videos = {
        'demo': demo_items,
        'synthetic': lambda: synthetic_items(args.synthetic_frames, *args.synthetic_size, args.objects),
    }
    print(f'{device}, {torch.get_num_threads()} threads; recipe weights seed {WEIGHTS_SEED}')
    for name, items in videos.items():
        reference, reference_seconds = segment(model, items(), 'fp32')
        print(f'{name}: {len(reference) + 1} frames, {reference[0][0].shape[0] - 1} objects; '
              f'fp32 {reference_seconds:.2f} s/frame')
        for precision in precisions:
            other, seconds = segment(model, items(), precision)
            iou, decisive, largest = agreement(reference, other)
            margins = ', '.join(f'margin {margin:g} ({100 * share:.1f}% of pixels) {decisive_iou:.4f}'
                                for margin, (decisive_iou, share) in decisive.items())
            print(f'  {precision}: {seconds:.2f} s/frame; max probability difference {largest:.4f}; '
                  f'mean IoU vs fp32 {iou:.4f}, on decisive pixels: {margins}', flush=True)


if __name__ == '__main__':
    main()
