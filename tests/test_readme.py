"""The README's demo command and Python example, run exactly as written.

A local HTTP server answering as the Hugging Face Hub stands in for the checkpoint download
(recipe weights under the released file name); the README's setup and test commands are what .ci/run runs.
"""
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from dataset.eval_sets import open_video
from tests.conftest import REPO
from tests.support.http_server import hub_files
from tests.support.synth import moving_shapes
from utils.download import RELEASE_REPO, RELEASED_CHECKPOINTS
from utils.masks import read_label_mask, write_label_mask
from utils.video_writer import Mp4Writer


def readme_block(marker):
    """The code block right after `<!-- ci:MARKER -->` in README.md."""
    with open(os.path.join(REPO, 'README.md')) as f:
        text = f.read()
    match = re.search(rf'<!-- ci:{marker} -->\n```\w*\n(.*?)```', text, re.S)
    assert match, f'README.md has no ci:{marker} block'
    return match.group(1)


@pytest.fixture
def project_copy(tmp_path):
    """The project's code and assets in a fresh folder, so outputs don't land in the checkout."""
    ignore = shutil.ignore_patterns('.git', '.venv', 'tests', 'output', 'overlay', 'logs', '__pycache__')
    shutil.copytree(REPO, tmp_path / 'project', ignore=ignore)
    return tmp_path / 'project'


@pytest.fixture
def served_davis17(serve, recipe_checkpoint, tmp_path):
    """A Hugging Face Hub mirror (HF_ENDPOINT) serving the recipe weights as the released davis17 file, with
    empty Hugging Face and torch caches."""
    with open(recipe_checkpoint, 'rb') as f:
        url, server = serve(hub_files(RELEASE_REPO, {RELEASED_CHECKPOINTS['davis17']: f.read()}), hub=True)
    env = dict(os.environ, HF_ENDPOINT=url, HF_HOME=str(tmp_path / 'hf'), TORCH_HOME=str(tmp_path / 'torch'),
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ['PATH'],
               PYTHONPATH=str(tmp_path / 'project'))
    for variable in ('HF_HUB_OFFLINE', 'HF_HUB_CACHE', 'AFBURR_CACHE_DIR', 'AFBURR_CHECKPOINT_URL'):
        env.pop(variable, None)
    return env, server


def checkpoint_downloads(server):
    return [path for path, _ in server.requests if '/resolve/' in path]


def test_demo_command(project_copy, served_davis17):
    env, server = served_davis17
    command = readme_block('demo').strip()
    result = subprocess.run(command, shell=True, cwd=project_copy, env=env, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(checkpoint_downloads(server)) == 1
    masks = sorted(os.listdir(project_copy / 'output' / 'AFB-URR_Video' / 'demo'))
    assert masks == [f'{t:05d}.png' for t in range(50)]
    assert (project_copy / 'output' / 'overlay' / 'AFB-URR_Video' / 'demo.mp4').is_file()


def test_python_example(project_copy, served_davis17):
    env, server = served_davis17
    # The example reads the demo clip; a 3-frame clip of the same size keeps the test short.
    frames, masks = moving_shapes(6, 3, 270, 480, 2)
    with Mp4Writer(str(project_copy / 'assets' / 'demo' / 'demo.mp4'), fps=25) as writer:
        for frame in frames:
            writer.write(frame)
    write_label_mask(project_copy / 'assets' / 'demo' / 'demo_first_mask.png', masks[0])
    (project_copy / 'example.py').write_text(readme_block('api-example'))
    result = subprocess.run([sys.executable, 'example.py'], cwd=project_copy, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(checkpoint_downloads(server)) == 1
    np.testing.assert_array_equal(read_label_mask(project_copy / 'mask_00000.png'), masks[0])
    for t in (1, 2):
        assert set(np.unique(read_label_mask(project_copy / f'mask_{t:05d}.png'))) <= {0, 1, 2}


def test_the_readme_names_a_frame_folders_outputs_as_eval_writes_them(tmp_path):
    frames, masks = moving_shapes(0, 3, 16, 16, 1)
    folder = tmp_path / 'clip'
    folder.mkdir()
    for name, frame in zip(('0', '5', '10'), frames):
        Image.fromarray(frame).save(folder / f'{name}.jpg')
    write_label_mask(tmp_path / 'first.png', masks[0])
    names = [f'{name}.png' for name in open_video(str(folder), str(tmp_path / 'first.png')).output_names()]
    with open(os.path.join(REPO, 'README.md')) as f:
        own_video = f.read().split('## Your own video')[1].split('\n## ')[0]
    assert f'after the frames for a folder (`{", ".join(names)}`)' in ' '.join(own_video.split())
