"""Run tests/test_golden.py in six thread and kernel settings, each in a fresh interpreter.

    python -m tests.support.golden_matrix

OMP_NUM_THREADS unset, 1 and 2, each with torch's default CPU kernels and with AVX2 kernels
(ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2). Prints one PASS/FAIL line per setting with
the kernels and thread count torch reports, and the float32 comparison closest to its tolerance
(the margins the tests print). Exit status 1 if any setting fails.
"""
import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
THREADS = (None, '1', '2')
KERNELS = {'default': {}, 'avx2': {'ONEDNN_MAX_CPU_ISA': 'AVX2', 'ATEN_CPU_CAPABILITY': 'avx2'}}
SETTING_VARIABLES = ('OMP_NUM_THREADS', 'ONEDNN_MAX_CPU_ISA', 'ATEN_CPU_CAPABILITY')
MARGIN = re.compile(r'float32 margin (\S+ \S+): (\S+) of (\S+) allowed')
RESULT_COUNTS = re.compile(r'\d+ (?:passed|failed)[^\n]* in [\d.]+s')
TORCH_REPORT = 'import torch; print(torch.backends.cpu.get_cpu_capability(), torch.get_num_threads())'


def setting_environment(threads, kernels):
    env = {key: value for key, value in os.environ.items() if key not in SETTING_VARIABLES}
    if threads is not None:
        env['OMP_NUM_THREADS'] = threads
    env.update(KERNELS[kernels])
    return env


def run_setting(threads, kernels):
    """(passed, one summary line) for one setting."""
    env = setting_environment(threads, kernels)
    capability, n_threads = subprocess.run([sys.executable, '-c', TORCH_REPORT], env=env, cwd=REPO,
                                           capture_output=True, text=True, check=True).stdout.split()
    result = subprocess.run([sys.executable, '-m', 'pytest', '-s', '-q', '-p', 'no:cacheprovider',
                             'tests/test_golden.py'], env=env, cwd=REPO, capture_output=True, text=True)
    margins = [(float(distance) / float(allowed), quantity, distance, allowed)
               for quantity, distance, allowed in MARGIN.findall(result.stdout)]
    closest = max(margins, default=None)
    counts = RESULT_COUNTS.findall(result.stdout)
    summary = (f'OMP_NUM_THREADS={threads or "unset"} kernels={kernels} (torch: {capability}, {n_threads} threads): '
               f'{counts[-1] if counts else "no test result"}')
    if closest:
        ratio, quantity, distance, allowed = closest
        summary += f'; closest float32 margin {quantity} {distance} of {allowed} ({ratio:.0%} of the tolerance)'
    return result.returncode == 0, summary


def main():
    failed = 0
    for kernels in KERNELS:
        for threads in THREADS:
            passed, summary = run_setting(threads, kernels)
            failed += not passed
            print(('PASS ' if passed else 'FAIL ') + summary, flush=True)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
