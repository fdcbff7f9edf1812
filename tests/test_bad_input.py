"""Bad input ends in one 'error: ' line on stderr and exit status 2 before any model loads (eval.py,
train.py), or in a UserError that names the problem without mentioning a flag (the Python API);
nothing is written."""
import math

import numpy as np
import pytest
import torch

import eval as eval_script
import train as train_script
from model.inference.segmenter import Segmenter
from tests.conftest import run_script
from tests.support.synth import moving_shapes, write_davis, write_frame_folder
from utils.errors import UserError
from utils.masks import write_label_mask


@pytest.fixture(scope='module')
def davis(tmp_path_factory):
    """A DAVIS layout of two sequences, and a file that is no checkpoint: a run that got to loading the model
    would stop at it with another message."""
    root = tmp_path_factory.mktemp('davis')
    for i in range(2):
        frames, masks = moving_shapes(i, 3, 32, 48, 1)
        write_davis(str(root / 'DAVIS'), f'seq{i}', frames, masks)
    (root / 'not_a_checkpoint.pth').write_text('not weights')
    return root


def eval_flags(davis, output):
    return ['--level', '1', '--dataset', str(davis / 'DAVIS'), '--resume', str(davis / 'not_a_checkpoint.pth'),
            '--device', 'cpu', '--output', str(output)]


def one_error_line(capsys):
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: '), err
    return lines[0]


# ------------------------------------------------------------------ flags

@pytest.mark.parametrize('flag, value, problem', [
    ('--update-rate', '0', 'must be in (0, 1]'),
    ('--update-rate', 'nan', 'must be a number, not NaN'),
    ('--update-rate', '1.5', 'must be in (0, 1]'),
    ('--merge-thres', '2', 'must be in [-1, 1]'),
    ('--merge-thres', 'nan', 'must be a number, not NaN'),
    ('--workers', '-1', 'must be at least 0'),
    ('--budget', '0', 'must be a positive number of features'),
])
def test_eval_refuses_a_flag_out_of_range_at_parsing(davis, tmp_path, capsys, flag, value, problem):
    with pytest.raises(SystemExit) as exit_status:
        eval_script.main([*eval_flags(davis, tmp_path / 'out'), flag, value])
    assert exit_status.value.code == 2
    line = one_error_line(capsys)
    assert f'argument {flag}: {value}: {problem}' in line
    assert not (tmp_path / 'out').exists()


def test_eval_refuses_score_on_a_video_without_ground_truth(davis, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_status:
        eval_script.main(['--video', str(tmp_path / 'clip.mp4'), '--mask', str(tmp_path / 'first.png'),
                          '--resume', 'davis17', '--score'])
    assert exit_status.value.code == 2
    assert one_error_line(capsys).startswith('error: --score: a --video has no ground truth to score against')


@pytest.mark.parametrize('flag, value, message', [
    ('--budget', '0', '--budget 0: must be a positive number of features'),
])
def test_train_refuses_a_flag_out_of_range_before_reading_a_checkpoint(davis, capsys, flag, value, message):
    # The checkpoint named does not exist: checked first, the flag gives the error.
    assert train_script.main(['--level', '1', '--dataset', str(davis / 'DAVIS'), '--resume',
                              str(davis / 'missing.pth'), '--device', 'cpu', flag, value]) == 2
    assert one_error_line(capsys) == f'error: {message}'


@pytest.mark.parametrize('option, value, message', [
    ('update_rate', math.nan, 'update_rate=nan: must be a number, not NaN'),
    ('update_rate', 0.0, 'update_rate=0.0: must be in (0, 1]'),
    ('merge_thres', math.nan, 'merge_thres=nan: must be a number, not NaN'),
    ('merge_thres', -1.5, 'merge_thres=-1.5: must be in [-1, 1]'),
    ('budget', 0, 'budget=0: must be a positive number of features'),
])
def test_the_api_refuses_a_bank_option_out_of_range_before_loading(davis, option, value, message):
    with pytest.raises(UserError) as error:
        Segmenter.from_pretrained(str(davis / 'missing.pth'), device='cpu', **{option: value})
    assert str(error.value).startswith(message) and '--' not in str(error.value)


# ------------------------------------------------------------------ first masks without an object

@pytest.mark.parametrize('fill', [0, 255])
def test_a_first_mask_without_an_object_stops_the_run_before_the_model_loads(davis, tmp_path, capsys, fill):
    root = tmp_path / 'DAVIS'
    for i, fill_of_sequence in enumerate((1, fill)):
        frames, masks = moving_shapes(i, 3, 32, 48, 1)
        write_davis(str(root), f'seq{i}', frames, np.where(masks > 0, fill_of_sequence, 0).astype(np.uint8))
    flags = eval_flags(davis, tmp_path / 'out')
    flags[flags.index('--dataset') + 1] = str(root)
    assert eval_script.main(flags) == 2
    mask = root / 'Annotations' / '480p' / 'seq1' / '00000.png'
    assert one_error_line(capsys).startswith(f'error: {mask}: the first-frame mask has no object (only '
                                             f'background 0 or void 255)')
    assert not (tmp_path / 'out').exists()  # not even the sequence before it: the whole run stops


def test_a_first_mask_without_an_object_is_one_line_from_the_script(tmp_path, recipe_checkpoint):
    frames, _ = moving_shapes(0, 2, 32, 48, 1)
    folder = write_frame_folder(tmp_path / 'frames', frames)
    write_label_mask(tmp_path / 'empty.png', np.zeros((32, 48), np.uint8))
    result = run_script('eval.py', '--video', folder, '--mask', tmp_path / 'empty.png', '--resume',
                        recipe_checkpoint, '--device', 'cpu', '--output', tmp_path / 'out', check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f'error: {tmp_path / "empty.png"}: the first-frame mask has no object (only background 0 or void 255); '
        f'label each object with its own value 1, 2, ...']
    assert not (tmp_path / 'out').exists()


# ------------------------------------------------------------------ output folders

def test_an_output_folder_below_a_file_is_refused_before_the_model_loads(davis, tmp_path, capsys):
    (tmp_path / 'file').write_text('x')
    assert eval_script.main(eval_flags(davis, tmp_path / 'file' / 'out')) == 2
    assert one_error_line(capsys).startswith(
        f'error: {tmp_path / "file" / "out" / "AFB-URR_DAVIS_17val"}: cannot write files in this folder '
        f'({tmp_path / "file"} is a file, not a folder)')


def test_an_overlay_folder_that_is_a_file_is_refused_before_the_model_loads(davis, tmp_path, capsys):
    (tmp_path / 'out').mkdir()
    (tmp_path / 'out' / 'overlay').write_text('x')
    assert eval_script.main([*eval_flags(davis, tmp_path / 'out'), '--viz']) == 2
    assert one_error_line(capsys).startswith(
        f'error: {tmp_path / "out" / "overlay" / "AFB-URR_DAVIS_17val"}: cannot write files in this folder '
        f'({tmp_path / "out" / "overlay"} is a file, not a folder)')


def test_a_full_disk_is_found_before_the_model_loads(davis, tmp_path):
    result = run_script('eval.py', *eval_flags(davis, tmp_path / 'out'), check=False, file_size_limit=0)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f'error: {tmp_path / "out" / "AFB-URR_DAVIS_17val"}: cannot write files in this folder (File too large); '
        f'make it writable, free disk space or choose another folder']


def test_train_refuses_a_log_root_that_is_a_file_before_reading_a_checkpoint(davis, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'logs').write_text('x')
    assert train_script.main(['--level', '1', '--dataset', str(davis / 'DAVIS'), '--resume',
                              str(davis / 'missing.pth'), '--device', 'cpu', '--log']) == 2
    assert one_error_line(capsys).startswith('error: logs: cannot write files in this folder '
                                             f'({tmp_path / "logs"} is a file, not a folder)')


# ------------------------------------------------------------------ the Python API's frames and masks

@pytest.fixture(scope='module')
def segmenter(recipe_checkpoint):
    return Segmenter.from_pretrained(recipe_checkpoint, device='cpu')


[FRAME], [MASK] = moving_shapes(3, 1, 32, 48, 2)


@pytest.mark.parametrize('mask, problem', [
    (np.zeros((32, 48), np.uint8), 'the mask of frame 0 has no object (only background 0 or void 255)'),
    (np.full((32, 48), 255, np.uint8), 'the mask of frame 0 has no object (only background 0 or void 255)'),
    (MASK[:16], 'the mask is 48x16 (WxH) but its frame is 48x32; they must have the same size'),
    (np.stack([MASK] * 3, axis=-1), 'the mask is a colour image (32, 48, 3)'),
    (np.where(MASK == 1, 300, MASK.astype(np.int64)), 'the mask holds labels 0..300; labels must be 0..255'),
    (MASK.astype(np.float32) * 0.5, 'the mask holds non-integer values'),
])
def test_the_api_refuses_a_bad_mask(segmenter, mask, problem):
    with pytest.raises(UserError) as error:
        segmenter.session().step(FRAME, mask=mask)
    assert str(error.value).startswith(problem) and '--' not in str(error.value)


@pytest.mark.parametrize('frame, problem', [
    (torch.from_numpy(FRAME).permute(2, 0, 1).contiguous(), 'a frame tensor must be float in [0, 1], got torch.uint8'),
    (torch.from_numpy(FRAME).permute(2, 0, 1).float(), 'a frame tensor must hold values in [0, 1], got 0..255'),
    (FRAME.astype(np.float32), 'a frame array must be RGB uint8 (H, W, 3), got float32'),
])
def test_the_api_refuses_a_bad_frame(segmenter, frame, problem):
    with pytest.raises(UserError) as error:
        segmenter.session().step(frame, mask=MASK)
    assert str(error.value).startswith(problem) and '--' not in str(error.value)


def test_the_api_takes_a_float_tensor_frame_and_an_integral_float_mask(segmenter):
    labels, _ = segmenter.session().step(torch.from_numpy(FRAME).permute(2, 0, 1).float() / 255,
                                         mask=MASK.astype(np.float64))
    np.testing.assert_array_equal(labels, MASK)
