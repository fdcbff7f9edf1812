"""Shards as real separate processes: eval.py --videos and --level split by --shard K/N or by a Slurm array
task's variables, run at the same time, killed and rerun, and torchrun over a list; the union of the shards is
the unsharded run's results, no video twice."""
import csv
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import REPO, run_script
from tests.support.synth import moving_shapes, write_davis
from tests.test_eval import free_port
from tests.test_video_list import write_clip
from utils.masks import read_label_mask

NAMES = [f'v{i}' for i in range(5)]
FRAMES = 3
# The video shard 1 is killed in runs longer, so that the kill lands while it runs however loaded the machine is.
FRAMES_OF = {'v2': 8}


@pytest.fixture(scope='module')
def video_list(tmp_path_factory):
    """Five small videos (three frame folders, two MP4 files) in a list."""
    root = tmp_path_factory.mktemp('videos')
    lines = ['video,mask,name']
    for i, name in enumerate(NAMES):
        video, mask = write_clip(root / 'clips', f'clip{i}', 30 + i, as_file=i % 2 == 1,
                                 frames=FRAMES_OF.get(name, FRAMES))
        lines.append(f'{os.path.relpath(video, root)},{os.path.relpath(mask, root)},{name}')
    (root / 'videos.csv').write_text('\n'.join(lines) + '\n')
    return root / 'videos.csv'


def environment(**variables):
    """This environment without Slurm's array variables, one thread per process (two run at once), and
    `variables`."""
    env = {key: value for key, value in os.environ.items() if not key.startswith('SLURM_')}
    env.update(OMP_NUM_THREADS='1', **variables)
    return env


def eval_command(*flags):
    return [sys.executable, os.path.join(REPO, 'eval.py'), *map(str, flags)]


def summary(path):
    with open(path, newline='') as f:
        return [(row['video'], row['status']) for row in csv.DictReader(f)]


def masks_of(results, name):
    folder = results / name
    return {frame: read_label_mask(folder / frame) for frame in sorted(os.listdir(folder)) if frame.endswith('.png')}


def assert_same_masks(results, expected, names):
    for name in names:
        got, want = masks_of(results, name), masks_of(expected, name)
        assert sorted(got) == sorted(want) == [f'{t:05d}.png' for t in range(FRAMES_OF.get(name, FRAMES))], name
        for frame in want:
            np.testing.assert_array_equal(got[frame], want[frame], err_msg=f'{name}/{frame}')


def test_two_shards_at_once_one_killed_and_rerun_give_the_unsharded_results_no_video_twice(
        video_list, recipe_checkpoint, tmp_path):
    common = ['--videos', video_list, '--resume', recipe_checkpoint, '--device', 'cpu', '--workers', 0]
    run_script('eval.py', *common, '--output', tmp_path / 'single', env=environment())
    single = tmp_path / 'single' / 'AFB-URR_Video'
    assert summary(single / 'summary.csv') == [(name, 'written') for name in NAMES]

    out = tmp_path / 'sharded'
    results = out / 'AFB-URR_Video'
    # Shard 2 of 2 as the second task of a Slurm array submitted as --array=7-8; shard 1 by the flag, killed once
    # its first video is finished.
    slurm = environment(SLURM_ARRAY_TASK_ID='8', SLURM_ARRAY_TASK_MIN='7', SLURM_ARRAY_TASK_MAX='8',
                        SLURM_ARRAY_TASK_COUNT='2')
    second = subprocess.Popen(eval_command(*common, '--output', out), cwd=REPO, env=slurm, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    first = subprocess.Popen(eval_command(*common, '--output', out, '--shard', '1/2'), cwd=REPO, env=environment(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not (results / 'v0' / 'video.json').exists():
            assert first.poll() is None, 'shard 1 ended before it was killed'
            time.sleep(0.005)
        first.send_signal(signal.SIGKILL)
        assert first.wait(timeout=60) == -signal.SIGKILL
        stdout, stderr = second.communicate(timeout=600)
    finally:
        for process in (first, second):
            if process.poll() is None:
                process.kill()
                process.wait()
    assert second.returncode == 0, stderr
    assert stdout.splitlines()[0] == (
        'shard 2/2 chosen by the Slurm array (SLURM_ARRAY_TASK_ID=8, SLURM_ARRAY_TASK_MIN=7, SLURM_ARRAY_TASK_MAX=8, '
        'SLURM_ARRAY_TASK_COUNT=2); pass --shard K/N to choose another, or --shard 1/1 to run every video in this task')
    assert summary(results / 'summary-2-of-2.csv') == [('v1', 'written'), ('v3', 'written')]
    assert not (results / 'v2' / 'video.json').exists() and not (results / 'v4' / 'video.json').exists()

    rerun = run_script('eval.py', *common, '--output', out, '--shard', '1/2', env=environment())
    assert 'v0: outputs already written, skipped' in rerun.stdout
    assert summary(results / 'summary-1-of-2.csv') == [('v0', 'already written'), ('v2', 'written'),
                                                       ('v4', 'written')]
    assert sorted(name for name in os.listdir(results) if os.path.isdir(results / name)) == NAMES
    assert_same_masks(results, single, NAMES)


def test_level_shards_write_apart_and_score_only_scores_their_union(recipe_checkpoint, tmp_path):
    root = tmp_path / 'DAVIS'
    for i in range(3):
        frames, masks = moving_shapes(40 + i, FRAMES, 32, 48, 1)
        write_davis(root, f'seq{i}', frames, masks)
    common = ['--level', 1, '--dataset', root, '--resume', recipe_checkpoint, '--device', 'cpu', '--workers', 0,
              '--output', tmp_path / 'out']
    shards = [subprocess.Popen(eval_command(*common, '--shard', f'{k}/2'), cwd=REPO, env=environment(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for k in (1, 2)]
    segmented = []
    for shard in shards:
        stdout, stderr = shard.communicate(timeout=600)
        assert shard.returncode == 0, stderr
        segmented.append(sorted(line.split(':')[0] for line in stdout.splitlines() if 'frames,' in line))
    assert segmented == [['seq0', 'seq2'], ['seq1']]
    results = tmp_path / 'out' / 'AFB-URR_DAVIS_17val'
    assert sorted(name for name in os.listdir(results) if os.path.isdir(results / name)) == ['seq0', 'seq1', 'seq2']
    run_script('eval.py', '--level', 1, '--dataset', root, '--score-only', '--results', results, env=environment())
    with open(results / 'per-sequence_results-val.csv', newline='') as f:
        assert [row['Sequence'] for row in csv.DictReader(f)] == ['seq0_1', 'seq1_1', 'seq2_1']


def test_torchrun_processes_split_a_list_and_write_one_summary_in_its_order(video_list, recipe_checkpoint, tmp_path):
    env = environment(MASTER_ADDR='127.0.0.1')
    result = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2', '--master_addr', '127.0.0.1',
         '--master_port', str(free_port()), os.path.join(REPO, 'eval.py'), '--videos', str(video_list), '--resume',
         recipe_checkpoint, '--device', 'cpu', '--workers', '0', '--shard', '1/1', '--output', str(tmp_path / 'out')],
        cwd=REPO, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    results = tmp_path / 'out' / 'AFB-URR_Video'
    assert summary(results / 'summary.csv') == [(name, 'written') for name in NAMES]
