"""The Python API gives what eval.py gives on the same frames; --video on an MP4 and a frame folder."""
import os
import re

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from model.inference.segmenter import Segmenter
from tests.conftest import run_script
from tests.support.synth import moving_shapes, write_frame_folder
from utils.errors import UserError
from utils.masks import read_label_mask, write_label_mask
from utils.video_writer import Mp4Writer


@pytest.fixture(scope='module')
def clip():
    return moving_shapes(4, 6, 48, 64, 2)


def test_api_matches_eval_on_a_frame_folder(tmp_path, recipe_checkpoint, clip):
    frames, masks = clip
    folder = write_frame_folder(tmp_path / 'frames', frames)
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
    folder = write_frame_folder(tmp_path / 'frames', frames[:3])
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


@pytest.mark.parametrize('value, shown', [(float('nan'), 'nan..nan'), (float('inf'), '0..inf'),
                                          (-float('inf'), '-inf..0')])
def test_api_refuses_frames_with_nan_or_infinite_values(recipe_checkpoint, clip, value, shown):
    frames, masks = clip
    frame = torch.zeros(3, 48, 64)
    frame[1, 2, 3] = value
    session = Segmenter.from_pretrained(recipe_checkpoint, device='cpu').session()
    with pytest.raises(UserError, match=rf'^a frame tensor holds NaN or infinite values \({re.escape(shown)}\); '
                                        r'give finite values in \[0, 1\]$'):
        session.step(frame, mask=masks[0])


@pytest.mark.parametrize('key', ['0', -1, 1.0, True, None])
def test_api_refuses_mask_keys_that_are_not_frame_indices(recipe_checkpoint, clip, key):
    frames, masks = clip
    segmenter = Segmenter.from_pretrained(recipe_checkpoint, device='cpu')
    with pytest.raises(UserError, match=rf'^masks: the key {re.escape(repr(key))} is not a frame index; '):
        next(segmenter.segment(frames, {key: masks[0]}))


def test_api_refuses_masks_past_the_last_frame_after_yielding_every_frame(recipe_checkpoint, clip):
    frames, masks = clip
    segmenter = Segmenter.from_pretrained(recipe_checkpoint, device='cpu')
    results = segmenter.segment(iter(frames[:2]), {0: masks[0], np.int64(1): masks[1], 2: masks[2], 7: masks[0]})
    assert len([next(results), next(results)]) == 2  # known only when the frames end
    with pytest.raises(UserError, match=r'^masks were given for frames \[2, 7\], but the frames ended after 2; '
                                        r'check the frame indices of the masks \(the first frame is 0\)$'):
        next(results)


def test_api_refuses_a_frame_size_change_within_a_video(recipe_checkpoint, clip):
    frames, masks = clip
    segmenter = Segmenter.from_pretrained(recipe_checkpoint, device='cpu')
    smaller = [frames[0], frames[1][:32, :48]]
    with pytest.raises(UserError, match=r'^frame 1 is 48x32 \(WxH\) but the frames before it are 64x48; the frames '
                                        r'of one video must have one size \(start a new session for another video\)$'):
        list(segmenter.segment(smaller, masks[0]))


@pytest.mark.parametrize('option, value, problem', [
    ('update_rate', '0.1', "update_rate='0.1': must be a number, not str"),
    ('merge_thres', None, 'merge_thres=None: must be a number, not NoneType'),
    ('budget', True, 'budget=True: must be a number, not bool'),
])
def test_api_refuses_bank_options_that_are_not_numbers(recipe_checkpoint, option, value, problem):
    with pytest.raises(UserError, match=rf'^{re.escape(problem)}$'):
        Segmenter.from_pretrained(recipe_checkpoint, device='cpu', **{option: value})
