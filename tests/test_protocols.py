"""Levels 2 and 3 follow the released loops, quirks included; own videos keep the better behaviour."""
import numpy as np
import pytest
import torch

from dataset.eval_sets import frame_folder_sequence, long_video_sequences, youtube_sequences
from dataset.levels import LEVELS
from model.inference.options import BankOptions
from model.inference.propagation import FORCED_SCORE, Propagation
from model.inference.video_runner import OutputFolders, segment_video
from model.network.afburr import AFBURR
from tests.support.recipe import recipe_state_dict
from tests.support.synth import moving_shapes, write_long_video, write_youtube
from utils.masks import read_label_mask

# 32x32 frames give 2x2 = 4 features per frame and object; merging off, so each memorized frame adds 4.
NO_MERGING = BankOptions(budget=10000, update_rate=0.05, merge_thres=1.0)


@pytest.fixture(scope='module')
def model():
    network = AFBURR()
    network.load_state_dict(recipe_state_dict(7))
    return network.eval()


def test_level_3_never_memorizes_the_last_two_frames(model, tmp_path):
    frames, masks = moving_shapes(1, 6, 32, 32, 1)
    write_long_video(str(tmp_path / 'long'), 'clip', frames, masks)
    (sequence,) = long_video_sequences(str(tmp_path / 'long'))
    level = segment_video(model, sequence, OutputFolders(str(tmp_path / 'level3')), NO_MERGING,
                          LEVELS[3].update_before(sequence), workers=0, progress=False)
    # The same frames as your own video (--video): every frame but the last is memorized.
    own = frame_folder_sequence(str(tmp_path / 'long' / 'JPEGImages' / 'clip'), sequence.given_masks[0])
    video = segment_video(model, own, OutputFolders(str(tmp_path / 'video')), NO_MERGING, workers=0, progress=False)

    def peak_entries(report):
        return [round(bank['peak'] * report.class_budget) for bank in report.bank]

    assert peak_entries(level) == [4 * 4, 4 * 4]   # frames 0..3 of 0..5
    assert peak_entries(video) == [5 * 4, 5 * 4]   # frames 0..4
    for t in range(5):  # the banks differ only when the last frame is segmented
        np.testing.assert_array_equal(read_label_mask(tmp_path / 'level3' / f'{t:05d}.png'),
                                      read_label_mask(tmp_path / 'video' / f'{t:05d}.png'))


def test_a_video_of_one_frame_reports_that_no_frame_entered_the_bank(model, tmp_path):
    frames, masks = moving_shapes(1, 1, 32, 32, 1)
    write_long_video(str(tmp_path / 'long'), 'clip', frames, masks)
    own = frame_folder_sequence(str(tmp_path / 'long' / 'JPEGImages' / 'clip'),
                                str(tmp_path / 'long' / 'Annotations' / 'clip' / '00000.png'))
    report = segment_video(model, own, OutputFolders(str(tmp_path / 'out')), NO_MERGING, workers=0, progress=False)
    assert report.summary().startswith('clip: 1 frames, ')
    assert report.summary().endswith(' fps; no frame entered the feature bank')


def test_level_2_keeps_a_channel_for_an_id_missing_in_between(model, tmp_path):
    frames, masks = moving_shapes(2, 5, 32, 32, 3)
    masks[masks == 2] = 0  # objects 1 and 3 only
    write_youtube(str(tmp_path / 'ytb'), 'vid', frames, masks)
    (sequence,) = youtube_sequences(str(tmp_path / 'ytb'))
    assert sequence.object_labels == (1, 2, 3)
    loop = Propagation(model, sequence.object_labels, NO_MERGING)
    outputs = list(loop.run(sequence.frames(workers=0)))
    assert loop.bank.obj_n == 4 and loop.bank.class_budget == NO_MERGING.budget // 4
    for output in outputs[1:]:
        assert torch.all(output.scores[2] == -FORCED_SCORE)  # never started, forced away, yet memorized
        assert 2 not in set(np.unique(loop.label_map(output)))
    assert loop.bank.sizes()[2] == loop.bank.sizes()[1]


def test_level_2_starts_an_object_at_its_first_listed_frame_even_when_its_mask_is_empty(model, tmp_path):
    frames, masks = moving_shapes(3, 5, 32, 32, 2)
    masks[1][masks[1] == 2] = 0  # object 2 is listed from frame 1, where its mask is empty
    write_youtube(str(tmp_path / 'ytb'), 'vid', frames, masks, first_frames={1: 0, 2: 1})
    (sequence,) = youtube_sequences(str(tmp_path / 'ytb'))
    items = list(sequence.frames(workers=0))
    assert items[1].given_labels == (2,) and not items[1].given.any()
    loop = Propagation(model, sequence.object_labels, NO_MERGING)
    for t in range(5):
        output = loop.step(items[t])
        if t == 1:
            assert torch.all(output.scores[2] == -FORCED_SCORE)  # empty mask: nowhere this frame
        if t == 2:
            # Frame 1 restarted the bank: every entry was added at frame 1.
            assert all(torch.all(added == 1) for added in loop.bank.added)
            assert not torch.all(output.scores[2] == -FORCED_SCORE)  # started: no longer forced away
