"""The working size of your own videos (--size, Segmenter's size): frames shrink so that their shorter side is
N, never grow; masks and labels come back at the frames' own size."""
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import eval as eval_script

from model.inference.options import working_size_of_flag
from model.inference.propagation import FrameItem, Propagation
from model.inference.segmenter import Segmenter
from tests.conftest import run_script
from tests.support.synth import moving_shapes, write_frame_folder
from utils.errors import UserError
from utils.images import at_working_size, rgb_to_tensor, working_size
from utils.masks import read_label_mask, write_label_mask
from utils.video_writer import Mp4Writer


@pytest.fixture(scope='module')
def clip():
    return moving_shapes(5, 4, 48, 64, 2)


def test_the_shorter_side_becomes_n_with_the_aspect_kept_and_nothing_is_enlarged():
    assert working_size(1080, 1920, 480) == (480, 853)     # 1920 * 480 / 1080 = 853.3
    assert working_size(1920, 1080, 480) == (853, 480)     # portrait
    assert working_size(1080, 1921, 480) == (480, 854)     # 853.8, rounded
    assert working_size(2160, 3840, 480) == (480, 853)
    assert working_size(480, 854, 480) == (480, 854)       # already there
    assert working_size(360, 640, 480) == (360, 640)       # never enlarged
    assert working_size(1080, 1920, None) == (1080, 1920)  # the native size


def test_frames_resize_bilinear_and_given_masks_nearest(clip):
    frames, masks = clip
    frame, mask = rgb_to_tensor(frames[0]), masks[0]
    small, original = at_working_size(frame, 24)
    assert small.shape == (3, 24, 32) and original == (48, 64)
    item = FrameItem(0, small, original_size=original)
    item.give(mask, [1, 2])
    assert item.given.shape == (24, 32) and item.given_labels == (1, 2)
    assert set(np.unique(item.given)) <= set(np.unique(mask))  # labels, not blends of them
    assert item.original_given is mask                          # kept as drawn, for the written labels
    assert 0 <= small.min() and small.max() <= 1
    np.testing.assert_allclose(small.mean(dim=(1, 2)), frame.mean(dim=(1, 2)), atol=0.02)
    same, original = at_working_size(frame, 48)
    assert same is frame and original is None
    item = FrameItem(0, same)
    item.give(mask, [1, 2])
    assert item.given is mask and item.original_given is None


def test_eval_writes_masks_at_the_videos_size_and_the_api_gives_the_same(tmp_path, recipe_checkpoint, clip):
    frames, masks = clip
    folder = write_frame_folder(tmp_path / 'frames', frames)
    with Mp4Writer(tmp_path / 'clip.mp4', fps=10) as writer:
        for frame in frames:
            writer.write(frame)
    write_label_mask(tmp_path / 'first.png', masks[0])
    for video in (folder, tmp_path / 'clip.mp4'):
        run_script('eval.py', '--video', video, '--mask', tmp_path / 'first.png', '--resume', recipe_checkpoint,
                   '--gpu', -1, '--output', tmp_path / 'out', '--size', 32, '--viz')
    segmenter = Segmenter.from_pretrained(recipe_checkpoint, device='cpu', size=32)
    results = list(segmenter.segment(frames, masks[0], probabilities=True))
    for name in ('frames', 'clip'):
        written = [read_label_mask(tmp_path / 'out' / 'AFB-URR_Video' / name / f'{t:05d}.png') for t in range(4)]
        assert all(mask.shape == (48, 64) for mask in written)
        np.testing.assert_array_equal(written[0], masks[0])  # the given mask as drawn, not its 32-pixel copy
        if name == 'frames':  # the same frames (the MP4's are lossy)
            for mask, (labels, probabilities) in zip(written, results):
                np.testing.assert_array_equal(mask, labels)
                assert probabilities.shape == (3, 48, 64)
                np.testing.assert_allclose(probabilities.sum(axis=0), 1, atol=1e-5)
    np.testing.assert_array_equal(results[0][0], masks[0])
    native = list(Segmenter.from_pretrained(recipe_checkpoint, device='cpu', size=None).segment(frames, masks[0]))
    assert any((labels != results[t][0]).any() for t, labels in enumerate(native))  # the size took effect
    assert os.path.isfile(tmp_path / 'out' / 'overlay' / 'AFB-URR_Video' / 'clip.mp4')


def test_masks_given_later_come_back_as_drawn_and_the_other_objects_as_predicted(recipe_checkpoint, clip):
    frames, masks = clip
    segmenter = Segmenter.from_pretrained(recipe_checkpoint, device='cpu', size=32)
    only_first = np.where(masks[2] == 1, 1, 0).astype(np.uint8)
    without = list(segmenter.segment(frames, {0: masks[0]}))
    labels = list(segmenter.segment(frames, {0: masks[0], 2: only_first}))
    drawn = only_first == 1
    assert (labels[2][drawn] == 1).all() and (labels[2][~drawn] != 1).all()
    # The loop saw object 1's mask at the working size: scaled back, it is not the drawn one.
    item = FrameItem(2, at_working_size(rgb_to_tensor(frames[2]), 32)[0])
    item.give(only_first, [1])
    seen = F.interpolate(torch.from_numpy(item.given)[None, None].float(), size=(48, 64), mode='nearest')[0, 0]
    seen = seen.numpy() == 1
    assert (seen != drawn).any()
    # Object 2, not given at frame 2, keeps its prediction wherever object 1's mask covers it in neither form.
    predicted_2 = (without[2] == 2) & ~drawn & ~seen
    assert predicted_2.any() and (labels[2][predicted_2] == 2).all()


def test_size_none_runs_at_the_native_size_as_before(recipe_checkpoint, clip):
    frames, masks = clip
    segmenter = Segmenter.from_pretrained(recipe_checkpoint, device='cpu', size=None)
    results = list(segmenter.segment(frames, masks[0], probabilities=True))
    loop = Propagation(segmenter.model, ())
    outputs = list(loop.run(FrameItem(t, rgb_to_tensor(frame), masks[0] if t == 0 else None, (1, 2) if t == 0 else ())
                            for t, frame in enumerate(frames)))
    for (labels, probabilities), output in zip(results, outputs):
        np.testing.assert_array_equal(labels, loop.label_map(output))
        np.testing.assert_array_equal(probabilities, output.probabilities.numpy())
    assert Segmenter.from_pretrained(recipe_checkpoint, device='cpu').size == 480


def test_size_with_a_level_is_refused_with_one_line(tmp_path, recipe_checkpoint, capsys):
    result = run_script('eval.py', '--level', 1, '--dataset', tmp_path, '--resume', 'davis17', '--size', 480,
                        check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == ('error: --size is for --video and --videos: the --level protocols run at their '
                                     'released frame sizes (see eval.py --help)')
    args = eval_script.parse_args(['--video', 'v.mp4', '--mask', 'm.png', '--resume', 'davis17'])
    assert working_size_of_flag(args.size) == 480
    args = eval_script.parse_args(['--video', 'v.mp4', '--mask', 'm.png', '--resume', 'davis17', '--size', '-1'])
    assert working_size_of_flag(args.size) is None
    with pytest.raises(SystemExit):
        eval_script.parse_args(['--video', 'v.mp4', '--mask', 'm.png', '--resume', 'davis17', '--size', '8'])
    assert 'at least 16, or -1 for the native size' in capsys.readouterr().err
    with pytest.raises(UserError, match=r'size=8: must be a whole number of pixels, at least 16, or None'):
        Segmenter.from_pretrained(recipe_checkpoint, device='cpu', size=8)
