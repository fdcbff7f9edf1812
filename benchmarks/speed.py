"""Frames per second of the inference loop (network + feature bank) at DAVIS size.

    python -m benchmarks.speed [--device cpu|cuda] [--size 480 854] [--objects 1 2 4]
                               [--precisions fp32 bf16] [--frames 6] [--repeats 3]
                               [--baseline GIT_REF] [--end-to-end] [--threads N]

Every measurement runs in a fresh process (so peak memory and the allocator's state are
its own), on the same synthetic video (textured shapes drifting over a smooth background,
one per object) with the golden recipe weights (speed does not depend on them) and the
default bank options. The first frame (memorized only) and the first segmented frame
(warm-up) are not timed; fps counts the frames after them. Peak memory is the process's
peak resident set on the CPU, the peak allocated by torch on CUDA.

--baseline REF checks REF out into a temporary git worktree and measures its loop the
same way (fp32 only, the precisions it knows nothing about are skipped), interleaved
with ours (ours, baseline, ours, baseline, ...), and prints the speed-up, min and median
over --repeats. --end-to-end also times `eval.py --video` (with --precision) on an MP4 of
that video, from start to exit (decoding, model load, writing the masks included).

The machine's load changes the numbers: compare only runs made together, as this does.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WEIGHTS_SEED = 7
VIDEO_SEED = 3


def write_inputs(folder, n_frames, height, width, n_objects):
    """The synthetic video (frames.npy, first_mask.npy) and the recipe weights (weights.pth)."""
    import numpy as np
    import torch
    from tests.support.recipe import recipe_state_dict
    from tests.support.synth import moving_shapes
    frames, masks = moving_shapes(VIDEO_SEED, n_frames, height, width, n_objects)
    np.save(os.path.join(folder, 'frames.npy'), frames)
    np.save(os.path.join(folder, 'first_mask.npy'), masks[0])
    torch.save(recipe_state_dict(WEIGHTS_SEED), os.path.join(folder, 'weights.pth'))


def _tree_loop(tree):
    """(AFBURR, loop(model, labels, precision), item(t, frame, given, labels)) of `tree`: this layout
    (model/network, model/inference) or the one before it (63dee95: model/network.py, model/propagation.py)."""
    sys.path.insert(0, tree)
    try:
        from model.inference.propagation import FrameItem, Propagation
        from model.network.afburr import AFBURR
    except ImportError:
        from dataset.frame_stream import FrameItem
        from model.network import AFBURR
        from model.propagation import Propagation
        return (AFBURR, lambda model, labels, precision: Propagation(model, labels),
                lambda t, frame, given, labels: FrameItem(t, frame, given))
    return (AFBURR, lambda model, labels, precision: Propagation(model, precision=precision),
            lambda t, frame, given, labels: FrameItem(t, frame, given, tuple(labels) if given is not None else ()))


def measure_loop(tree, inputs, device_name, precision, threads):
    """In a child process: run `tree`'s loop over the inputs; return fps and peak memory."""
    import resource

    import numpy as np
    import torch
    AFBURR, loop_for, item = _tree_loop(tree)
    if threads:
        torch.set_num_threads(threads)
    device = torch.device(device_name)
    frames = np.load(os.path.join(inputs, 'frames.npy'))
    first_mask = np.load(os.path.join(inputs, 'first_mask.npy'))
    model = AFBURR()
    model.load_state_dict(torch.load(os.path.join(inputs, 'weights.pth')), strict=True)
    model = model.to(device).eval()
    labels = sorted(int(v) for v in np.unique(first_mask) if v)
    loop = loop_for(model, labels, precision)
    items = (item(t, torch.from_numpy(f).permute(2, 0, 1).float().div(255), first_mask if t == 0 else None, labels)
             for t, f in enumerate(frames))
    stamps = []
    for output in loop.run(items):
        output.probabilities.cpu()  # waits for the device
        stamps.append(time.perf_counter())
    timed = stamps[2:]  # after the memorized first frame and one warm-up frame
    usage = resource.getrusage(resource.RUSAGE_SELF)
    if device.type == 'cuda':
        peak_mib = torch.cuda.max_memory_allocated(device) / 2 ** 20
    else:
        peak_mib = usage.ru_maxrss / 1024
    return {'fps': (len(timed) - 1) / (timed[-1] - timed[0]), 'peak_mib': peak_mib,
            'threads': torch.get_num_threads(), 'bank_sizes': loop.bank.sizes(),
            'system_seconds': usage.ru_stime, 'minor_faults': usage.ru_minflt}


def write_video(inputs, folder):
    """The inputs as an MP4 and a label PNG, for eval.py --video."""
    import cv2
    import numpy as np
    from PIL import Image
    frames = np.load(os.path.join(inputs, 'frames.npy'))
    video = os.path.join(folder, 'video.mp4')
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*'mp4v'), 25, (frames.shape[2], frames.shape[1]))
    for frame in frames:
        writer.write(np.ascontiguousarray(frame[..., ::-1]))
    writer.release()
    mask = os.path.join(folder, 'first_mask.png')
    Image.fromarray(np.load(os.path.join(inputs, 'first_mask.npy'))).save(mask)
    return video, mask


def measure_end_to_end(tree, inputs, device_name, n_frames, precision):
    """eval.py --video on the inputs, timed from start to exit; fps = frames / seconds."""
    import torch
    with tempfile.TemporaryDirectory() as folder:
        video, mask = write_video(inputs, folder)
        checkpoint = os.path.join(folder, 'weights.pth')
        torch.save({'epoch': 0, 'model': torch.load(os.path.join(inputs, 'weights.pth')), 'optimizer': None,
                    'loss': 0.0, 'seed': WEIGHTS_SEED}, checkpoint)
        start = time.perf_counter()
        subprocess.run([sys.executable, os.path.join(tree, 'eval.py'), '--video', video, '--mask', mask,
                        '--resume', checkpoint, '--device', device_name, '--output', os.path.join(folder, 'out'),
                        *(['--precision', precision] if precision != 'fp32' else [])],
                       cwd=tree, check=True, capture_output=True)
        seconds = time.perf_counter() - start
    return {'fps': n_frames / seconds, 'seconds': seconds}


def run_child(tree, inputs, args, n_objects, precision, end_to_end=False, environment=None):
    """One measurement in a fresh process (with `environment` as its environment, if given)."""
    job = {'tree': tree, 'inputs': inputs, 'device': args.device, 'precision': precision,
           'threads': args.threads, 'end_to_end': end_to_end, 'frames': args.frames}
    out = subprocess.run([sys.executable, os.path.abspath(__file__), '--child', json.dumps(job)],
                         capture_output=True, text=True, env=environment)
    if out.returncode != 0:
        raise SystemExit(f'measurement failed ({os.path.basename(tree)}, {n_objects} objects, {precision}):\n'
                         f'{out.stderr[-3000:]}')
    return json.loads(out.stdout.strip().splitlines()[-1])


def child(job):
    if job['end_to_end']:
        result = measure_end_to_end(job['tree'], job['inputs'], job['device'], job['frames'], job['precision'])
    else:
        result = measure_loop(job['tree'], job['inputs'], job['device'], job['precision'], job['threads'])
    print(json.dumps(result))


def precisions_for(device_name, asked):
    import torch
    if asked:
        return asked
    if device_name.startswith('cuda'):
        return ['fp32', 'tf32', 'fp16'] + (['bf16'] if torch.cuda.is_bf16_supported() else [])
    return ['fp32', 'bf16'] if torch.ops.mkldnn._is_mkldnn_bf16_supported() else ['fp32']


def worktree_at(ref, folder):
    """A checkout of `ref`: the folder itself when `ref` is one (a copy of another version), else a git worktree."""
    if os.path.isdir(ref):
        return os.path.abspath(ref)
    path = os.path.join(folder, 'baseline')
    subprocess.run(['git', '-C', REPO, 'worktree', 'add', '--detach', '--force', path, ref],
                   check=True, capture_output=True)
    return path


def summary(values):
    return f'{min(values):.3f} / {statistics.median(values):.3f}'


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--device', default='cpu', help='cpu, cuda or cuda:N (default cpu)')
    parser.add_argument('--size', type=int, nargs=2, default=[480, 854], metavar=('H', 'W'))
    parser.add_argument('--objects', type=int, nargs='+', default=[1, 2, 4])
    parser.add_argument('--precisions', nargs='+', choices=['fp32', 'tf32', 'bf16', 'fp16'],
                        help='default: every precision the device runs fast')
    parser.add_argument('--frames', type=int, default=6, help='video length; the first two are not timed (default 6)')
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--threads', type=int, help='torch threads (default: torch\'s default)')
    parser.add_argument('--baseline', metavar='GIT_REF',
                        help='also measure this commit (or a folder holding another version), interleaved with ours')
    parser.add_argument('--end-to-end', action='store_true', help='also time eval.py --video (fp32)')
    parser.add_argument('--child', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    if args.frames < 4:
        parser.error('--frames must be at least 4 (two are not timed)')
    precisions = precisions_for(args.device, args.precisions)

    with tempfile.TemporaryDirectory() as folder:
        trees = {'ours': REPO}
        if args.baseline:
            trees['baseline'] = worktree_at(args.baseline, folder)
        try:
            measure_all(args, folder, trees, precisions)
        finally:
            if args.baseline and not os.path.isdir(args.baseline):
                subprocess.run(['git', '-C', REPO, 'worktree', 'remove', '--force', trees['baseline']],
                               capture_output=True)


def measure_all(args, folder, trees, precisions):
    height, width = args.size
    configs = [(n, p, False) for n in args.objects for p in precisions]
    if args.end_to_end:
        configs += [(n, p, True) for n in args.objects for p in precisions]
    inputs = {}
    for n_objects in args.objects:
        inputs[n_objects] = os.path.join(folder, f'inputs_{n_objects}')
        os.makedirs(inputs[n_objects])
        write_inputs(inputs[n_objects], args.frames, height, width, n_objects)

    results = {}
    for repeat in range(args.repeats):
        for n_objects, precision, end_to_end in configs:
            for name, tree in trees.items():
                if name == 'baseline' and precision != 'fp32':
                    continue
                result = run_child(tree, inputs[n_objects], args, n_objects, precision, end_to_end)
                results.setdefault((n_objects, precision, end_to_end, name), []).append(result)
                print(f'  repeat {repeat + 1}: {name:8s} {n_objects} objects {precision}'
                      f'{" end to end" if end_to_end else ""}: {result["fps"]:.3f} fps', flush=True)

    print(f'\n{args.device}, {height}x{width}, {args.frames - 2} timed frames, {args.repeats} repeats '
          f'(fps: min / median)')
    for (n_objects, precision, end_to_end, name), runs in results.items():
        what = 'eval.py end to end' if end_to_end else 'model + bank loop'
        fps = [r['fps'] for r in runs]
        line = f'{name:8s} {what:18s} {n_objects} objects {precision}: {summary(fps)} fps'
        if not end_to_end:
            line += f', peak {max(r["peak_mib"] for r in runs):.0f} MiB, {runs[0]["threads"]} threads'
        if name == 'baseline':
            ours = [r['fps'] for r in results[(n_objects, precision, end_to_end, 'ours')]]
            ratios = [a / b for a, b in zip(ours, fps)]
            line += f'; speed-up of ours: {summary(ratios)}x (median fps ratio {statistics.median(ours) / statistics.median(fps):.2f}x)'
        print(line)


if __name__ == '__main__':
    main()
