"""eval.py's second round of bad input (issue 16): names that would write into the dataset, empty or doubled
selections, lists that are not UTF-8, images that would decode wrongly or into gigabytes, frames changing
size, results of another run in the same folder. Each ends in one 'error: ' line (or one warning line where
the run can go on) and writes nothing it should not."""
import os

import numpy as np
import pytest
from PIL import Image

import eval as eval_script
from tests.support.synth import moving_shapes, write_davis, write_long_video


@pytest.fixture(scope='module')
def davis(tmp_path_factory):
    """A DAVIS layout of two sequences, and a file that is no checkpoint (a run that got to loading the
    model would stop at it with another message)."""
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


def tree(folder):
    """{relative path: bytes} of every file under `folder`."""
    return {os.path.relpath(os.path.join(d, f), folder): open(os.path.join(d, f), 'rb').read()
            for d, _, files in os.walk(folder) for f in files}


# ------------------------------------------------------------------ output names and folders

@pytest.mark.parametrize('prefix', ['x/../Annotations', '../../x', '..', '/tmp/x', ''])
def test_a_prefix_that_is_not_one_plain_name_is_refused_at_parsing(davis, tmp_path, capsys, prefix):
    with pytest.raises(SystemExit) as exit_status:
        eval_script.main([*eval_flags(davis, tmp_path / 'out'), '--prefix', prefix])
    assert exit_status.value.code == 2
    assert f'argument --prefix: {prefix}: not a plain name' in one_error_line(capsys)
    assert not (tmp_path / 'out').exists()


@pytest.mark.parametrize('inside', [('Annotations',), ('Annotations', '480p', 'seq0'), ('JPEGImages', '480p')])
def test_a_results_folder_inside_the_dataset_inputs_is_refused(davis, capsys, inside):
    before = tree(davis / 'DAVIS')
    output = davis.joinpath('DAVIS', *inside)
    assert eval_script.main(eval_flags(davis, output)) == 2
    folder = 'Annotations' if inside[0] == 'Annotations' else 'JPEGImages'
    assert one_error_line(capsys) == (
        f'error: {output / "AFB-URR_DAVIS_17val"}: output folder inside the input folder '
        f'{davis / "DAVIS" / folder}, whose files it could overwrite; choose an --output outside the dataset')
    assert tree(davis / 'DAVIS') == before


def test_a_results_folder_inside_the_video_frames_is_refused(tmp_path, capsys):
    frames, masks = moving_shapes(0, 2, 32, 48, 1)
    write_long_video(str(tmp_path / 'data'), 'clip', frames, masks)
    video = tmp_path / 'data' / 'JPEGImages' / 'clip'
    mask = tmp_path / 'data' / 'Annotations' / 'clip' / '00000.png'
    assert eval_script.main(['--video', str(video), '--mask', str(mask), '--resume', 'missing.pth',
                             '--output', str(video)]) == 2
    assert one_error_line(capsys).startswith(f'error: {video / "AFB-URR_Video"}: output folder inside the input '
                                             f'folder {video}')
    assert sorted(os.listdir(video)) == ['00000.jpg', '00001.jpg']


def test_the_output_may_be_the_dataset_root(davis, tmp_path, capsys):
    # Beside the inputs, not inside them: only the missing checkpoint stops the run.
    assert eval_script.main(eval_flags(davis, davis / 'DAVIS')) == 2
    assert 'not_a_checkpoint.pth' in one_error_line(capsys)


# ------------------------------------------------------------------ selections and lists

@pytest.mark.parametrize('sequences', [',', '', ',,'])
def test_an_empty_selection_is_refused(davis, tmp_path, capsys, sequences):
    with pytest.raises(SystemExit) as exit_status:
        eval_script.main([*eval_flags(davis, tmp_path / 'out'), '--sequences', sequences])
    assert exit_status.value.code == 2
    assert one_error_line(capsys).startswith(f'error: --sequences {sequences!r}: names no video')


def _davis_with_list(tmp_path, text):
    root = tmp_path / 'DAVIS'
    frames, masks = moving_shapes(0, 2, 32, 48, 1)
    write_davis(str(root), 'seq0', frames, masks)
    (root / 'ImageSets' / '2017' / 'val.txt').write_bytes(text)
    return root


def test_a_name_listed_twice_is_refused(tmp_path, capsys):
    root = _davis_with_list(tmp_path, b'seq0\n# a comment\nseq0\n')
    flags = eval_flags(tmp_path, tmp_path / 'out')
    flags[flags.index('--dataset') + 1] = str(root)
    assert eval_script.main(flags) == 2
    assert one_error_line(capsys) == (f"error: {root / 'ImageSets' / '2017' / 'val.txt'}, line 3: 'seq0' is listed "
                                      f"twice (first on line 1); list each name once")
    assert not (tmp_path / 'out').exists()


def test_a_list_that_is_not_utf8_is_refused(tmp_path, capsys):
    root = _davis_with_list(tmp_path, 'seq0\ns\xe9q\n'.encode('latin-1'))
    flags = eval_flags(tmp_path, tmp_path / 'out')
    flags[flags.index('--dataset') + 1] = str(root)
    assert eval_script.main(flags) == 2
    assert one_error_line(capsys).startswith(f"error: {root / 'ImageSets' / '2017' / 'val.txt'}: not UTF-8 text "
                                             f"(invalid continuation byte at byte 6)")
