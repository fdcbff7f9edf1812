"""eval.py stopped mid-video (SIGKILL, SIGTERM, a full disk) leaves only complete files, and the next run
removes what a killed one left and finishes the video; a script stopped while it imports ends in one line."""
import os
import signal
import subprocess
import sys
import time

import cv2
import pytest
from PIL import Image

from tests.conftest import REPO, run_script
from tests.support.synth import moving_shapes, write_long_video

FRAMES = 12
MODEL_NAME = 'AFB-URR_LongVideo'


@pytest.fixture(scope='module')
def long_video(tmp_path_factory):
    root = tmp_path_factory.mktemp('long')
    frames, masks = moving_shapes(5, FRAMES, 48, 64, 2)
    write_long_video(str(root), 'clip', frames, masks)
    return root


@pytest.fixture
def eval_flags(long_video, recipe_checkpoint, tmp_path):
    return ['--level', 3, '--dataset', long_video, '--resume', recipe_checkpoint, '--device', 'cpu', '--viz',
            '--workers', 0, '--output', tmp_path / 'out']


def output_files(out):
    """Every file under `out`, as paths relative to it."""
    return sorted(os.path.relpath(os.path.join(folder, name), out)
                  for folder, _, names in os.walk(out) for name in names)


def temporaries(out):
    return [path for path in output_files(out) if os.path.basename(path).startswith('.')]


def check_complete(out):
    """No temporaries; every PNG decodes completely, and the overlay MP4, if written, holds every frame."""
    assert temporaries(out) == []
    for path in output_files(out):
        if path.endswith('.png'):
            with Image.open(os.path.join(out, path)) as image:
                image.load()
    video = os.path.join(out, 'overlay', MODEL_NAME, 'clip.mp4')
    if os.path.exists(video):
        capture = cv2.VideoCapture(video)
        assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == FRAMES
        capture.release()


def check_finished(out):
    check_complete(out)
    expected = [f'{t:05d}.png' for t in range(FRAMES)]
    assert sorted(os.listdir(os.path.join(out, MODEL_NAME, 'clip'))) == expected
    assert sorted(os.listdir(os.path.join(out, 'overlay', MODEL_NAME, 'clip'))) == expected
    assert os.path.isfile(os.path.join(out, 'overlay', MODEL_NAME, 'clip.mp4'))


def stop_mid_video(flags, tmp_path, signal_number):
    """Start eval.py, send it `signal_number` once its overlay MP4 is being written; returns (exit status, stderr)."""
    out, stderr_path = tmp_path / 'out', tmp_path / 'stderr.txt'
    with open(stderr_path, 'w') as stderr:
        process = subprocess.Popen([sys.executable, os.path.join(REPO, 'eval.py'), *map(str, flags)], cwd=REPO,
                                   stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            overlay_root = out / 'overlay' / MODEL_NAME
            while not (overlay_root.is_dir() and [name for name in os.listdir(overlay_root) if '.tmp' in name]):
                assert process.poll() is None, stderr_path.read_text()
                time.sleep(0.005)
            process.send_signal(signal_number)
            status = process.wait(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    return status, stderr_path.read_text()


def test_a_killed_run_leaves_temporaries_that_the_next_run_removes(eval_flags, tmp_path):
    status, _ = stop_mid_video(eval_flags, tmp_path, signal.SIGKILL)
    assert status == -signal.SIGKILL
    out = tmp_path / 'out'
    assert [path for path in temporaries(out) if path.endswith('.tmp.mp4')]  # the MP4 being written
    assert not (out / 'overlay' / MODEL_NAME / 'clip.mp4').exists()
    run_script('eval.py', *eval_flags)
    check_finished(out)


def test_sigterm_cleans_up_and_exits_130_with_one_line(eval_flags, tmp_path):
    status, stderr = stop_mid_video(eval_flags, tmp_path, signal.SIGTERM)
    assert status == 130
    assert stderr.strip().splitlines()[-1] == \
        'interrupted: finished videos are kept; rerun the same command to continue'
    assert 'Traceback' not in stderr
    out = tmp_path / 'out'
    check_complete(out)
    assert not (out / 'overlay' / MODEL_NAME / 'clip.mp4').exists()
    run_script('eval.py', *eval_flags)
    check_finished(out)


def test_a_disk_full_mid_run_stops_with_one_line_and_only_complete_files(eval_flags, tmp_path):
    # Masks (palette PNGs of about 300 bytes) fit under the limit; overlays (RGB PNGs, several kB) do not.
    result = run_script('eval.py', *eval_flags, check=False, file_size_limit=2000)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith('error: ')]
    assert len(errors) == 1 and 'Traceback' not in result.stderr, result.stderr
    overlays = tmp_path / 'out' / 'overlay' / MODEL_NAME / 'clip'
    assert errors[0].startswith(f'error: {overlays}{os.sep}') and \
        errors[0].endswith('.png: cannot write it (File too large); free disk space or make its folder writable, '
                           'then run again')
    assert os.listdir(tmp_path / 'out' / MODEL_NAME / 'clip')  # masks were written before it stopped
    check_complete(tmp_path / 'out')
    assert not (tmp_path / 'out' / 'overlay' / MODEL_NAME / 'clip.mp4').exists()


# Sends this process SIGINT when the script's imports first reach one of the modules named (comma-separated), as a
# Ctrl-C during the seconds they take would, then runs the script as __main__.
INTERRUPTED_AT_AN_IMPORT = '''
import os, runpy, signal, sys

modules = sys.argv[2].split(',')

class InterruptAtAModule:
    def find_spec(self, name, path=None, target=None):
        if name in modules:
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGINT)
        return None

script = sys.argv[1]
sys.path.insert(0, os.path.dirname(script))
sys.argv = [script, '--help']
sys.meta_path.insert(0, InterruptAtAModule())
runpy.run_path(script, run_name='__main__')
'''


def interrupted_at_an_import(script, modules):
    return subprocess.run([sys.executable, '-c', INTERRUPTED_AT_AN_IMPORT, os.path.join(REPO, script), modules],
                          cwd=REPO, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize('script', ['eval.py', 'train.py', 'unify_pretrain_dataset.py', 'app.py'])
def test_ctrl_c_during_the_imports_exits_130_with_one_line(script):
    result = interrupted_at_an_import(script, 'torch,numpy')
    assert result.returncode == 130, result.stderr
    assert result.stderr == 'interrupted: nothing was done\n'
    assert result.stdout == ''  # stopped before --help was parsed


# Within numpy's imports a KeyboardInterrupt was caught and lost (numpy.linalg: the app then served), or left numpy
# half-imported, which failed with a RecursionError traceback (numpy.lib.mixins).
@pytest.mark.parametrize('module', ['numpy.linalg', 'numpy.lib.mixins'])
def test_ctrl_c_inside_numpys_imports_is_neither_lost_nor_a_traceback(module):
    result = interrupted_at_an_import('app.py', module)
    assert (result.returncode, result.stderr, result.stdout) == (130, 'interrupted: nothing was done\n', '')
