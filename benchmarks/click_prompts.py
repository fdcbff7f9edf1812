"""How fast proposed masks answer: SAM 2.1 hiera tiny's image embedding and its answer to clicks after it, and
GrabCut's answer to a box, at 640x480 and 3072x2304.

    python -m benchmarks.click_prompts [--repeats 5] [--threads 2]

The model is built from transformers' Sam2Config defaults, which are hiera tiny's sizes (the configuration of
facebook/sam2.1-hiera-tiny), with random weights: speed does not depend on them, and nothing is downloaded.
The frame is a synthetic picture (an ellipse on a textured background); the box holds the ellipse with about a
third of its size around it. Each measurement runs `--repeats` times after one warm-up call, in this process;
it prints the minimum and the median wall time, and the CPU time of the median run (all threads).
"""
import argparse
import statistics
import time

import numpy as np
import torch

SIZES = ((480, 640), (2304, 3072))


def picture(height, width, seed=0):
    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.clip(rng.normal(110, 12, (height, width, 3)), 0, 255)
    image[..., 1] += 40 * np.sin(xx / (width / 18.0))
    inside = ((xx - 0.53 * width) / (0.19 * width)) ** 2 + ((yy - 0.5 * height) / (0.18 * height)) ** 2 <= 1
    image[inside] = np.clip(rng.normal((200, 60, 40), 10, (inside.sum(), 3)), 0, 255)
    box = (int(0.3 * width), int(0.27 * height), int(0.77 * width), int(0.74 * height))
    return image.astype(np.uint8), box


def timed(call, repeats):
    """(min wall, median wall, CPU of the median run) in seconds over `repeats` calls after one warm-up."""
    call()
    runs = []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        call()
        runs.append((time.perf_counter() - wall, time.process_time() - cpu))
    runs.sort()
    return runs[0][0], statistics.median(wall for wall, _ in runs), runs[len(runs) // 2][1]


def report(what, times):
    low, median, cpu = times
    print(f'{what:58s} min {low:7.3f} s   median {median:7.3f} s   cpu {cpu:7.3f} s', flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--threads', type=int, default=2, help='torch threads (default 2)')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from transformers import Sam2Config, Sam2ImageProcessor, Sam2Model, Sam2Processor

    from webapp.click_model import Sam2Proposer
    from webapp.grabcut import box_mask, prompt_mask
    from webapp.prompts import Click, Prompt

    torch.manual_seed(0)
    proposer = Sam2Proposer(Sam2Model(Sam2Config()), Sam2Processor(image_processor=Sam2ImageProcessor()), 'random')
    print(f'torch threads {torch.get_num_threads()}; {args.repeats} runs each after a warm-up')
    for height, width in SIZES:
        image, box = picture(height, width)
        x, y = 0.53 * width, 0.5 * height
        report(f'{width}x{height} SAM 2 embedding', timed(lambda: proposer.embedding(image), args.repeats))
        proposer.embedding(image, 'frame')
        prompts = {'1 click': Prompt(clicks=(Click(x, y, True),)),
                   '3 clicks (one negative)': Prompt(clicks=(Click(x, y, True), Click(x + 0.1 * width, y, True),
                                                             Click(0.1 * width, 0.1 * height, False))),
                   'box and a click': Prompt(box=box, clicks=(Click(x, y, True),))}
        for name, prompt in prompts.items():
            report(f'{width}x{height} SAM 2 answer after the embedding: {name}',
                   timed(lambda: proposer.propose(image, prompt, 'frame'), args.repeats))
        report(f'{width}x{height} GrabCut box', timed(lambda: box_mask(image, box), args.repeats))
        whole = (int(0.05 * width), int(0.05 * height), int(0.95 * width), int(0.95 * height))
        report(f'{width}x{height} GrabCut box over 90% of the frame', timed(lambda: box_mask(image, whole),
                                                                          args.repeats))
        report(f'{width}x{height} GrabCut 1 click, no box',
               timed(lambda: prompt_mask(image, Prompt(clicks=(Click(x, y, True),))), args.repeats))


if __name__ == '__main__':
    main()
