"""eval.py's second round of bad input (issue 16): names that would write into the dataset, empty or doubled
selections, lists that are not UTF-8, images that would decode wrongly or into gigabytes, frames changing
size, results of another run in the same folder. Each ends in one 'error: ' line (or one warning line where
the run can go on) and writes nothing it should not."""
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import eval as eval_script
from dataset.eval_sets import long_video_sequences, open_video
from dataset.frame_stream import load_frame_item
from dataset.scoring import annotation_frame_names
from dataset.training import DAVISTrain, load_pair
from tests.conftest import REPO, run_script
from tests.support.recipe import write_recipe_checkpoint
from tests.support.synth import moving_shapes, write_davis, write_long_video, write_png_claiming
from tests.test_bad_input import davis, eval_flags, one_error_line  # noqa: F401 (davis: a fixture)
from utils.errors import UserError
from utils.images import MAX_IMAGE_PIXELS, natural_sorted, rgb_to_tensor
from utils.masks import label_mask_image, write_label_mask


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


@pytest.mark.parametrize('prefix, shown, problem', [
    ('   ', '   ', 'it is only white space'),
    ('run\n2', "'run\\n2'", 'it holds a line break or another control character'),
    ('a\tb', "'a\\tb'", 'it holds a line break or another control character'),
])
def test_a_prefix_of_white_space_or_with_a_line_break_is_refused_on_one_line(davis, tmp_path, capsys, prefix, shown,
                                                                             problem):
    with pytest.raises(SystemExit) as exit_status:
        eval_script.main([*eval_flags(davis, tmp_path / 'out'), '--prefix', prefix])
    assert exit_status.value.code == 2
    assert f'argument --prefix: {shown}: not a plain name ({problem});' in one_error_line(capsys)
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


# ------------------------------------------------------------------ frame order and image files

def _frame_folder(folder, names, seed=0, ext='.png'):
    frames, masks = moving_shapes(seed, len(names), 32, 48, 1)
    folder.mkdir(parents=True)
    for name, frame in zip(names, frames):
        Image.fromarray(frame).save(folder / f'{name}{ext}')
    return frames, masks


def test_numbered_frames_run_in_number_order(tmp_path):
    names = ['0', '5', '10', '15', '100']
    _, masks = _frame_folder(tmp_path / 'clip', names)
    write_label_mask(tmp_path / 'first.png', masks[0])
    assert open_video(str(tmp_path / 'clip'), str(tmp_path / 'first.png')).frame_names == names
    frames, masks = moving_shapes(1, len(names), 32, 48, 1)
    root = tmp_path / 'long'
    _frame_folder(root / 'JPEGImages' / 'v', names, seed=1, ext='.jpg')
    (root / 'Annotations' / 'v').mkdir(parents=True)
    for name in ('0', '100'):
        write_label_mask(root / 'Annotations' / 'v' / f'{name}.png', masks[0])
    (root / 'val.txt').write_text('v\n')
    [sequence] = long_video_sequences(str(root))
    assert sequence.frame_names == names and sequence.given_masks == {0: str(root / 'Annotations' / 'v' / '0.png')}
    assert annotation_frame_names(str(root / 'Annotations' / 'v')) == ['0.png', '100.png']


def test_zero_padded_names_keep_their_order():
    names = [f'{t:05d}.jpg' for t in (0, 5, 10, 95, 100, 12345)] + ['a.jpg', 'b10.jpg', 'b9.jpg']
    assert natural_sorted(names) == [f'{t:05d}.jpg' for t in (0, 5, 10, 95, 100, 12345)] + ['a.jpg', 'b9.jpg',
                                                                                             'b10.jpg']


def test_training_frames_run_in_number_order(tmp_path):
    root = tmp_path / 'DAVIS'
    frames, masks = moving_shapes(0, 3, 32, 48, 1)
    write_davis(str(root), 'seq', frames, masks, split='train')
    for folder, ext in ((root / 'JPEGImages' / '480p' / 'seq', '.jpg'),
                        (root / 'Annotations' / '480p' / 'seq', '.png')):
        for t, name in enumerate(('0', '5', '10')):
            os.rename(folder / f'{t:05d}{ext}', folder / f'{name}{ext}')
    [(_, files)] = DAVISTrain(str(root), output_size=32, clip_n=2, obj_n=2).videos
    assert [os.path.basename(image) for image, _ in files] == ['0.jpg', '5.jpg', '10.jpg']


def test_a_16_bit_grey_frame_is_scaled_in_eval_and_training(tmp_path):
    grey = np.random.RandomState(0).randint(0, 256, (32, 48)).astype(np.uint8)
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / '00000.png')   # 16-bit, the same picture
    write_label_mask(tmp_path / 'first.png', (grey > 128).astype(np.uint8))
    sequence = open_video(str(tmp_path), str(tmp_path / 'first.png'))
    frame = load_frame_item(sequence, 0).frame
    assert torch.equal(frame, rgb_to_tensor(np.repeat(grey[..., None], 3, axis=2)))
    image, _ = load_pair(tmp_path / '00000.png', tmp_path / 'first.png')
    assert np.array_equal(np.asarray(image), np.repeat(grey[..., None], 3, axis=2))


def test_a_jpeg_mask_is_refused_with_advice(tmp_path, capsys):
    _frame_folder(tmp_path / 'clip', ['00000', '00001'])
    Image.fromarray(np.where(np.arange(48) < 20, 255, 0).astype(np.uint8)[None].repeat(32, 0)).save(
        tmp_path / 'first.jpg', quality=75)
    assert eval_script.main(['--video', str(tmp_path / 'clip'), '--mask', str(tmp_path / 'first.jpg'),
                             '--resume', 'missing.pth', '--output', str(tmp_path / 'out')]) == 2
    assert one_error_line(capsys) == (
        f'error: {tmp_path / "first.jpg"}: mask saved as JPEG, whose lossy compression changes label values '
        f'(a 0/255 mask becomes dozens of labels); save the label mask as PNG')


def test_a_gif_mask_is_refused_with_advice_as_its_labels_are_renumbered(tmp_path, capsys):
    _frame_folder(tmp_path / 'clip', ['00000', '00001'])
    labels = np.zeros((32, 48), np.uint8)
    labels[4:12, 4:12], labels[16:28, 20:40] = 3, 7
    label_mask_image(labels).save(tmp_path / 'first.gif')  # Pillow's GIF writer stores labels 3 and 7 as 1 and 2
    assert eval_script.main(['--video', str(tmp_path / 'clip'), '--mask', str(tmp_path / 'first.gif'),
                             '--resume', 'missing.pth', '--output', str(tmp_path / 'out')]) == 2
    assert one_error_line(capsys) == (
        f'error: {tmp_path / "first.gif"}: mask saved as GIF, whose writers renumber the labels to the colours used '
        f'(labels 3 and 7 become 1 and 2); save the label mask as PNG')
    assert not (tmp_path / 'out').exists()


@pytest.mark.parametrize('width, height, size', [
    (30000, 30000, f'over {Image.MAX_IMAGE_PIXELS} pixels'),   # Pillow's DecompressionBombError
    (12000, 12000, f'over {Image.MAX_IMAGE_PIXELS} pixels'),   # Pillow's warning, then 1.26 GB decoded
    (9000, 8000, '9000x8000'),
])
def test_a_huge_mask_is_refused_from_its_header(tmp_path, capsys, recwarn, width, height, size):
    _frame_folder(tmp_path / 'clip', ['00000', '00001'])
    mask = write_png_claiming(tmp_path / 'huge.png', width, height)
    assert eval_script.main(['--video', str(tmp_path / 'clip'), '--mask', str(mask),
                             '--resume', 'missing.pth', '--output', str(tmp_path / 'out')]) == 2
    assert one_error_line(capsys) == (f'error: {mask}: mask file too large ({size}); images up to '
                                      f'{MAX_IMAGE_PIXELS} pixels (8192x8192) are read: scale it down')
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]


def test_a_huge_frame_is_refused_from_its_header(tmp_path):
    _, masks = _frame_folder(tmp_path / 'clip', ['00000'])
    write_png_claiming(tmp_path / 'clip' / '00001.png', 30000, 30000)
    write_label_mask(tmp_path / 'first.png', masks[0])
    sequence = open_video(str(tmp_path / 'clip'), str(tmp_path / 'first.png'))
    with pytest.raises(UserError, match=r'00001.png: frame image too large \(over'):
        load_frame_item(sequence, 1)


# ------------------------------------------------------------------ frames that change size

def error_lines(stderr):
    """The lines of a script's stderr that are not progress bars (tqdm's 'video:  33%|...')."""
    return [line for line in stderr.splitlines() if line.strip() and not re.match(r'\S+: +\d+%\|', line)]


@pytest.mark.parametrize('viz', [False, True])
def test_a_frame_of_another_size_stops_the_video_with_one_line(tmp_path, recipe_checkpoint, viz):
    frames, masks = _frame_folder(tmp_path / 'clip', ['00000', '00001'])
    Image.fromarray(np.zeros((40, 48, 3), np.uint8)).save(tmp_path / 'clip' / '00002.png')
    write_label_mask(tmp_path / 'first.png', masks[0])
    result = run_script('eval.py', '--video', tmp_path / 'clip', '--mask', tmp_path / 'first.png', '--resume',
                        recipe_checkpoint, '--device', 'cpu', '--output', tmp_path / 'out', *(['--viz'] * viz),
                        check=False)
    assert result.returncode == 2
    assert error_lines(result.stderr) == [
        f'error: {tmp_path / "clip" / "00002.png"}: frame is 48x40 but {tmp_path / "clip" / "00000.png"} is 48x32; '
        f'every frame of a video must have one size (resize the frames, or split the video where the size changes)']
    written = tmp_path / 'out' / 'AFB-URR_Video' / 'clip'
    assert sorted(os.listdir(written)) == ['00000.png', '00001.png']
    assert all(Image.open(written / name).size == (48, 32) for name in os.listdir(written))
    assert not (tmp_path / 'out' / 'overlay' / 'AFB-URR_Video' / 'clip.mp4').exists()


# ------------------------------------------------------------------ small shared memory (Docker's 64 MB /dev/shm)

_SMALL_SHM_RUN = '''
import sys
import torch
from PIL import Image
from dataset import frame_stream
from dataset.eval_sets import open_video
from tests.test_bad_input import davis, eval_flags, one_error_line  # noqa: F401 (davis: a fixture)
from tests.support.recipe import write_recipe_checkpoint
from tests.support.synth import moving_shapes
from utils.masks import write_label_mask

folder, mode = sys.argv[1], sys.argv[2]
frames, masks = moving_shapes(0, 8, 256, 320, 1)   # 0.98 MB a decoded frame: a 1 MB /dev/shm holds one
for t, frame in enumerate(frames):
    Image.fromarray(frame).save(f'{folder}/clip/{t:05d}.png')
write_label_mask(f'{folder}/first.png', masks[0])
if mode == 'pretend':   # as when another process fills /dev/shm after the check: the workers lose frames
    frame_stream._shared_memory_problem = lambda *args: None
    frame_stream.WORKER_TIMEOUT_S = 5
# 'working': at the working size 64 (64x80, 61 kB a frame) the workers' frames fit
sequence = open_video(f'{folder}/clip', f'{folder}/first.png', 64 if mode == 'working' else None)
items = list(frame_stream.stream_frames(sequence, workers=2))
assert [item.index for item in items] == list(range(8))
assert all(torch.equal(item.frame, frame_stream.load_frame_item(sequence, item.index).frame) for item in items)
print('frames ok')
'''


def _run_with_small_shm(folder, mode):
    """Run _SMALL_SHM_RUN in a private mount namespace whose /dev/shm is a 1 MB tmpfs (root only)."""
    if os.geteuid() != 0 or shutil.which('unshare') is None:
        pytest.skip('a private /dev/shm mount needs root and unshare')
    command = 'mount -t tmpfs -o size=1m tmpfs /dev/shm && exec "$0" -c "$1" "$2" "$3"'
    try:
        return subprocess.run(['unshare', '-m', 'sh', '-c', command, sys.executable, _SMALL_SHM_RUN, folder, mode],
                              cwd=REPO, capture_output=True, text=True, timeout=90)
    except subprocess.TimeoutExpired:
        pytest.fail('the decoding workers hung on a 1 MB /dev/shm')


def test_too_little_shared_memory_is_found_first_and_frames_decode_in_process(tmp_path):
    (tmp_path / 'clip').mkdir()
    result = _run_with_small_shm(str(tmp_path), 'check')
    assert result.returncode == 0 and result.stdout == 'frames ok\n', result.stderr
    assert result.stderr.splitlines() == [
        'warning: 10 MB of shared memory (/dev/shm) could not be allocated for the frames that 2 decoding workers '
        'read ahead; decoding in the main process instead (slower): in Docker give the container more with '
        '--shm-size=1g (its default is 64 MB), or pass --workers 0 to decode in the main process from the start']


def test_the_shared_memory_needed_is_that_of_frames_at_the_working_size(tmp_path):
    (tmp_path / 'clip').mkdir()
    result = _run_with_small_shm(str(tmp_path), 'working')
    assert (result.returncode, result.stdout, result.stderr) == (0, 'frames ok\n', '')


def test_workers_that_lose_frames_are_replaced_by_decoding_in_process(tmp_path):
    (tmp_path / 'clip').mkdir()
    result = _run_with_small_shm(str(tmp_path), 'pretend')
    assert result.returncode == 0 and result.stdout == 'frames ok\n', result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith('warning: ')]
    assert len(warnings) == 1 and 'frame-decoding workers failed (DataLoader timed out after 5 seconds)' in warnings[0]


# ------------------------------------------------------------------ reruns into the same results folder

def test_a_rerun_with_another_checkpoint_or_options_is_refused(tmp_path, recipe_checkpoint):
    _, masks = _frame_folder(tmp_path / 'clip', ['00000', '00001'])
    write_label_mask(tmp_path / 'first.png', masks[0])
    other_checkpoint = write_recipe_checkpoint(8, tmp_path / 'recipe8.pth')
    results = tmp_path / 'out' / 'AFB-URR_Video'

    def run(checkpoint, *flags):
        return run_script('eval.py', '--video', tmp_path / 'clip', '--mask', tmp_path / 'first.png', '--resume',
                          checkpoint, '--device', 'cpu', '--output', tmp_path / 'out', *flags, check=False)

    assert run(recipe_checkpoint).returncode == 0
    record = json.loads((results / 'run.json').read_text())
    assert record == {'checkpoint': 'sha256:' + hashlib.sha256(open(recipe_checkpoint, 'rb').read()).hexdigest(),
                      'level': 'video', 'budget': 300000, 'update_rate': 0.1, 'merge_thres': 0.95,
                      'precision': 'fp32', 'size': 480}
    masks_before = tree(results)
    advice = 'pass --overwrite to replace them, or choose another --output (or --prefix)'

    result = run(other_checkpoint)
    assert result.returncode == 2
    assert error_lines(result.stderr) == [
        f"error: {results}: holds the results of another run (checkpoint {record['checkpoint']!r}, now "
        f"{'sha256:' + hashlib.sha256(open(other_checkpoint, 'rb').read()).hexdigest()!r}); {advice}"]
    result = run(recipe_checkpoint, '--update-rate', '0.05')
    assert error_lines(result.stderr) == [
        f'error: {results}: holds the results of another run (update_rate 0.1, now 0.05); {advice}']
    assert tree(results) == masks_before

    assert run(recipe_checkpoint).returncode == 0   # the same run again
    assert run(other_checkpoint, '--overwrite').returncode == 0
    assert json.loads((results / 'run.json').read_text())['checkpoint'] != record['checkpoint']
    assert tree(results) != masks_before


def test_overwriting_some_videos_of_another_runs_folder_is_refused(davis, tmp_path, recipe_checkpoint):
    other_checkpoint = write_recipe_checkpoint(8, tmp_path / 'recipe8.pth')
    results = tmp_path / 'out' / 'AFB-URR_DAVIS_17val'

    def run(checkpoint, *flags):
        return run_script('eval.py', '--level', 1, '--dataset', davis / 'DAVIS', '--resume', checkpoint,
                          '--device', 'cpu', '--workers', 0, '--output', tmp_path / 'out', *flags, check=False)

    assert run(recipe_checkpoint).returncode == 0
    before = tree(results)
    result = run(other_checkpoint, '--overwrite', '--sequences', 'seq0')
    assert result.returncode == 2
    assert error_lines(result.stderr)[0].startswith(f'error: {results}: holds the results of another run (checkpoint')
    assert error_lines(result.stderr)[0].endswith(
        "; --overwrite with --sequences would keep that run's results of seq1 beside these; drop --sequences to "
        "redo every video, or choose another --output")
    assert tree(results) == before
    assert run(recipe_checkpoint, '--overwrite', '--sequences', 'seq0').returncode == 0  # the same run: redone
    assert run(other_checkpoint, '--overwrite').returncode == 0


# ------------------------------------------------------------------ corrupt video files

def test_a_corrupt_mp4_is_one_line_with_ffmpegs_reason(tmp_path, recipe_checkpoint):
    (tmp_path / 'clip.mp4').write_bytes(b'\x00\x00\x00\x18ftypmp42' + bytes(range(256)) * 20)
    write_label_mask(tmp_path / 'first.png', np.ones((32, 48), np.uint8))
    result = run_script('eval.py', '--video', tmp_path / 'clip.mp4', '--mask', tmp_path / 'first.png',
                        '--resume', recipe_checkpoint, '--device', 'cpu', '--output', tmp_path / 'out', check=False)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f'error: {tmp_path / "clip.mp4"}: cannot open it as a video (moov atom not found)']
