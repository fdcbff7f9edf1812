"""Which allocator setting is best: fps, system time, page faults and peak memory of the loop.

    python -m benchmarks.allocator [--size 480 854] [--objects 2] [--frames 6] [--repeats 2]
                                  [--glibc-defaults GIT_REF]

Measures our loop (as benchmarks/speed.py does, fresh processes, interleaved) with:
- 'mallopt at import': what every user gets (importing model.network calls
  utils.allocator.keep_freed_memory: glibc never mmaps, never trims);
- 'GLIBC_TUNABLES at start': the same settings given to glibc before the process starts,
  which is what re-executing a script with them would give (scripts only, not the API);
- 'glibc defaults' with --glibc-defaults REF, a commit from before that setting (7fea2a4):
  what is left of the churn once the network's per-object working sets were cut.
System seconds and minor page faults cover the whole process (model loading included).
"""
import argparse
import os
import statistics
import subprocess
import tempfile

from benchmarks.speed import REPO, run_child, worktree_at, write_inputs

TUNABLES = 'glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=2147483647'


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--size', type=int, nargs=2, default=[480, 854], metavar=('H', 'W'))
    parser.add_argument('--objects', type=int, default=2)
    parser.add_argument('--frames', type=int, default=6)
    parser.add_argument('--repeats', type=int, default=2)
    parser.add_argument('--glibc-defaults', metavar='GIT_REF', help='a commit without the setting, measured too')
    args = parser.parse_args()
    args.device, args.threads = 'cpu', None
    with tempfile.TemporaryDirectory() as folder:
        write_inputs(folder, args.frames, *args.size, args.objects)
        configs = {'mallopt at import': (REPO, None),
                   'GLIBC_TUNABLES at start': (REPO, dict(os.environ, GLIBC_TUNABLES=TUNABLES))}
        if args.glibc_defaults:
            configs['glibc defaults'] = (worktree_at(args.glibc_defaults, folder), None)
        try:
            results = {name: [] for name in configs}
            for repeat in range(args.repeats):
                for name, (tree, environment) in configs.items():
                    result = run_child(tree, folder, args, args.objects, 'fp32', environment=environment)
                    results[name].append(result)
                    print(f'  repeat {repeat + 1}: {name}: {result["fps"]:.3f} fps', flush=True)
        finally:
            if args.glibc_defaults and not os.path.isdir(args.glibc_defaults):
                subprocess.run(['git', '-C', REPO, 'worktree', 'remove', '--force', configs['glibc defaults'][0]],
                               capture_output=True)
    print(f'\n{args.size[0]}x{args.size[1]}, {args.objects} objects, {args.frames} frames, {args.repeats} repeats '
          f'(fps min / median; the rest medians)')
    for name, runs in results.items():
        fps = [r['fps'] for r in runs]
        print(f'{name:24s} {min(fps):.3f} / {statistics.median(fps):.3f} fps, '
              f'system {statistics.median(r["system_seconds"] for r in runs):.1f} s, '
              f'{statistics.median(r["minor_faults"] for r in runs) / 1e6:.2f} M minor faults, '
              f'peak RSS {statistics.median(r["peak_mib"] for r in runs):.0f} MiB')


if __name__ == '__main__':
    main()
