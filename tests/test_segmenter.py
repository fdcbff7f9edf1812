"""The Python API gives what eval.py gives on the same frames; --video on an MP4 and a frame folder."""
import os

import cv2
import numpy as np
import pytest
from PIL import Image

from model.inference.segmenter import Segmenter
from tests.conftest import run_script
from tests.support.synth import moving_shapes
from utils.errors import UserError
from utils.masks import read_label_mask, write_label_mask
from utils.video_writer import Mp4Writer


@pytest.fixture(scope='module')
def clip():
    return moving_shapes(4, 6, 48, 64, 2)


def test_api_matches_eval_on_a_frame_folder(tmp_path, recipe_checkpoint, clip):
    frames, masks = clip
    folder = tmp_path / 'frames'
    folder.mkdir()
    for t, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f'{t:05d}.png')
    write_label_mask(tmp_path / 'first.png', masks[0])
    run_script('eval.py', '--video', folder, '--mask', tmp_path / 'first.png', '--resume', recipe_checkpoint,
               '--gpu', -1, '--output', tmp_path / 'out', '--update-rate', 0.05)

    segmenter = Segmenter.from_pretrained(recipe_checkpoint, device='cpu', update_rate=0.05)
    results = list(segmenter.segment(iter(frames), masks[0], probabilities=True))
    assert len(results) == 6
    for t, (labels, probabilities) in enumerate(results):
        written = read_label_mask(tmp_path / 'out' / 'AFB-URR_Video' / 'frames' / f'{t:05d}.png')
        np.testing.assert_array_equal(labels, written)
        assert probabilities.shape == (3, 48, 64)
        np.testing.assert_allclose(probabilities.sum(axis=0), 1, atol=1e-5)
    np.testing.assert_array_equal(results[0][0], masks[0])


def test_video_file_with_viz(tmp_path, recipe_checkpoint, clip):
    frames, masks = clip
    with Mp4Writer(str(tmp_path / 'clip.mp4'), fps=12) as writer:
        for frame in frames:
            writer.write(frame)
    write_label_mask(tmp_path / 'first.png', masks[0])
    run_script('eval.py', '--video', tmp_path / 'clip.mp4', '--mask', tmp_path / 'first.png', '--resume',
               recipe_checkpoint, '--gpu', -1, '--viz', '--output', tmp_path / 'out')
    written = sorted(os.listdir(tmp_path / 'out' / 'AFB-URR_Video' / 'clip'))
    assert written == [f'{t:05d}.png' for t in range(6)]
    capture = cv2.VideoCapture(str(tmp_path / 'out' / 'overlay' / 'AFB-URR_Video' / 'clip.mp4'))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(12)
    capture.release()


def test_rgb_first_mask_is_refused_with_advice(tmp_path, recipe_checkpoint, clip):
    frames, masks = clip
    Image.fromarray(np.stack([masks[0] * 100] * 3, axis=-1)).save(tmp_path / 'rgb.png')
    result = run_script('eval.py', '--video', tmp_path, '--mask', tmp_path / 'rgb.png', '--resume',
                        recipe_checkpoint, '--gpu', -1, check=False)
    assert result.returncode == 2 and 'rgb.png: mask is a RGB colour image' in result.stderr
    assert 'convert it' in result.stderr


def test_api_rejects_bad_frames(recipe_checkpoint, clip):
    frames, masks = clip
    segmenter = Segmenter.from_pretrained(recipe_checkpoint, device='cpu')
    with pytest.raises(UserError, match='RGB uint8'):
        list(segmenter.segment([frames[0].astype(np.float32)], masks[0]))


def test_reduced_precision_is_opt_in_on_the_cli_and_the_api(tmp_path, recipe_checkpoint, clip):
    frames, masks = clip
    write_label_mask(tmp_path / 'first.png', masks[0])
    folder = tmp_path / 'frames'
    folder.mkdir()
    for t, frame in enumerate(frames[:3]):
        Image.fromarray(frame).save(folder / f'{t:05d}.png')
    run_script('eval.py', '--video', folder, '--mask', tmp_path / 'first.png', '--resume', recipe_checkpoint,
               '--gpu', -1, '--output', tmp_path / 'out', '--precision', 'bf16')
    assert sorted(os.listdir(tmp_path / 'out' / 'AFB-URR_Video' / 'frames')) == [f'{t:05d}.png' for t in range(3)]
    refused = run_script('eval.py', '--video', folder, '--mask', tmp_path / 'first.png', '--resume',
                         recipe_checkpoint, '--gpu', -1, '--output', tmp_path / 'fp16', '--precision', 'fp16',
                         check=False)
    assert refused.returncode == 2 and refused.stderr.strip() == \
        'error: precision fp16 needs a CUDA device (float16 convolutions on the CPU are slower than float32); ' \
        'use bf16 on the CPU'
    with pytest.raises(UserError, match='precision fp16 needs a CUDA device'):
        Segmenter.from_pretrained(recipe_checkpoint, device='cpu', precision='fp16')
    segmenter = Segmenter.from_pretrained(recipe_checkpoint, device='cpu', precision='bf16')
    labels, probabilities = list(segmenter.segment(frames[:2], masks[0], probabilities=True))[1]
    assert probabilities.dtype == np.float32 and labels.shape == masks[0].shape
