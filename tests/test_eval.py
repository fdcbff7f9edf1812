"""eval.py end to end on small DAVIS, YouTube-VOS and long-video layouts made in the test."""
import csv
import os
import socket
import subprocess
import sys

import cv2
import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO, run_script
from tests.support.synth import moving_shapes, write_davis, write_long_video, write_truncated_video, write_youtube
from utils.masks import read_label_mask, write_label_mask
from utils.video_writer import Mp4Writer

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data')


def write_png_davis(root, name, frames, first_mask):
    """DAVIS layout with lossless PNG frames, so the network sees exactly the golden frames."""
    frame_dir = root / 'JPEGImages' / '480p' / name
    frame_dir.mkdir(parents=True)
    for t, frame in enumerate(frames):
        Image.fromarray(frame).save(frame_dir / f'{t:05d}.png')
    write_label_mask(root / 'Annotations' / '480p' / name / '00000.png', first_mask)
    (root / 'ImageSets' / '2017').mkdir(parents=True, exist_ok=True)
    with open(root / 'ImageSets' / '2017' / 'val.txt', 'a') as f:
        f.write(name + '\n')


def test_davis_level_reproduces_the_golden_labels_and_skips_finished_videos(tmp_path, recipe_checkpoint):
    golden = dict(np.load(os.path.join(DATA, 'infer_3obj.npz')))
    write_png_davis(tmp_path / 'DAVIS', 'golden', golden['frames'], golden['first_mask'])
    out = tmp_path / 'output'
    flags = ['--level', 1, '--dataset', tmp_path / 'DAVIS', '--resume', recipe_checkpoint, '--gpu', -1,
             '--budget', 900, '--merge-thres', 0.9993, '--update-rate', 0.1, '--output', out]
    first = run_script('eval.py', *flags)
    assert 'fps' in first.stdout and 'peak use' in first.stdout

    folder = out / 'AFB-URR_DAVIS_17val' / 'golden'
    assert sorted(os.listdir(folder)) == [f'{t:05d}.png' for t in range(12)]
    np.testing.assert_array_equal(read_label_mask(folder / '00000.png'), golden['first_mask'])
    top2 = np.sort(golden['logits'], axis=1)[:, -2:]
    decided = top2[:, 1] - top2[:, 0] > 0.01
    for t in range(1, 12):
        labels = read_label_mask(folder / f'{t:05d}.png')
        assert labels.shape == (120, 200)
        assert np.array_equal(labels[decided[t - 1]], golden['labels'][t - 1][decided[t - 1]]), t

    stamp = os.path.getmtime(folder / '00005.png')
    again = run_script('eval.py', *flags)
    assert 'already written, skipped' in again.stdout
    assert os.path.getmtime(folder / '00005.png') == stamp


def test_long_videos_with_viz_score_and_own_label_values(tmp_path, recipe_checkpoint):
    root = tmp_path / 'long'
    frames, masks = moving_shapes(3, 8, 48, 64, 2)
    masks = np.where(masks == 1, 3, np.where(masks == 2, 7, 0)).astype(np.uint8)   # labels 3 and 7
    write_long_video(root, 'clip', frames, masks, annotated=(0, 3, 5, 7))
    out = tmp_path / 'runs' / 'output'
    result = run_script('eval.py', '--level', 3, '--dataset', root, '--resume', recipe_checkpoint, '--gpu', -1,
                        '--viz', '--score', '--prefix', 'try', '--output', out)

    folder = out / 'AFB-URR_LongVideo_try' / 'clip'
    assert sorted(os.listdir(folder)) == [f'{t:05d}.png' for t in range(8)]
    for t in range(8):
        assert set(np.unique(read_label_mask(folder / f'{t:05d}.png'))) <= {0, 3, 7}
    overlays = out / 'overlay' / 'AFB-URR_LongVideo_try'
    assert sorted(os.listdir(overlays / 'clip')) == [f'{t:05d}.png' for t in range(8)]
    capture = cv2.VideoCapture(str(overlays / 'clip.mp4'))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 8
    capture.release()

    with open(out / 'AFB-URR_LongVideo_try' / 'per-sequence_results-val.csv') as f:
        rows = list(csv.DictReader(f))
    # The DAVIS tool scores objects 1..max label of the first frame: 3 and 7, and 1, 2, 4, 5, 6 as empty.
    assert [row['Sequence'] for row in rows] == [f'clip_{i}' for i in range(1, 8)]
    assert float(rows[0]['J-Mean']) == 1.0 and float(rows[2]['J-Mean']) < 1.0
    assert 'J&F-Mean' in result.stdout


def test_youtube_level_late_objects_listed_frames_and_label_ids(tmp_path, recipe_checkpoint):
    root = tmp_path / 'ytb'
    frames, masks = moving_shapes(5, 7, 48, 64, 2)
    masks[:2][masks[:2] == 2] = 0                     # object 2 appears at frame 2
    masks[0] = 0                                      # no object on frame 0: the video starts at frame 1
    masks[1][masks[1] == 0] = 0
    write_youtube(root, 'vid', frames, masks, listed=[1, 2, 4, 6])
    out = tmp_path / 'output'
    run_script('eval.py', '--level', 2, '--dataset', root, '--resume', recipe_checkpoint, '--gpu', -1,
               '--output', out, '--update-rate', 0.05, '--score')
    folder = out / 'AFB-URR_YoutubeVOS' / 'vid'
    assert sorted(os.listdir(folder)) == ['00005.png', '00010.png', '00020.png', '00030.png']
    started = read_label_mask(folder / '00010.png')
    assert started.shape == (48, 64)
    np.testing.assert_array_equal(started == 2, masks[2] == 2)   # a starting object takes its given mask
    assert not (read_label_mask(folder / '00005.png') == 2).any()  # not yet started


def test_score_only_on_a_results_folder(tmp_path):
    root = tmp_path / 'DAVIS'
    frames, masks = moving_shapes(2, 5, 40, 56, 2)
    write_davis(root, 'seq', frames, masks)
    results = tmp_path / 'results'
    for t in range(5):
        predicted = masks[t].copy()
        if t == 2:
            predicted[predicted == 2] = 0      # object 2 missed on one scored frame
        write_label_mask(results / 'seq' / f'{t:05d}.png', predicted)
    run_script('eval.py', '--level', 1, '--dataset', root, '--score-only', '--results', results)
    with open(results / 'global_results-val.csv') as f:
        row = next(csv.DictReader(f))
    # Scored frames 1..3; object 1 perfect (J = 1), object 2 has J = 1, 0, 1 -> 2/3. Mean over objects: 5/6.
    assert float(row['J-Mean']) == pytest.approx(5 / 6, abs=1e-3)
    assert float(row['J-Recall']) == pytest.approx(5 / 6, abs=1e-3)


@pytest.mark.parametrize('problem', ['missing dataset', 'rgb mask', 'cuda', 'not a checkpoint', 'unknown sequence'])
def test_bad_input_gets_one_clear_line(tmp_path, recipe_checkpoint, problem):
    root = tmp_path / 'DAVIS'
    frames, masks = moving_shapes(2, 3, 32, 48, 1)
    write_davis(root, 'seq', frames, masks)
    flags = {'--level': 1, '--dataset': root, '--resume': recipe_checkpoint, '--gpu': -1, '--output': tmp_path / 'o'}
    expected = None
    if problem == 'missing dataset':
        flags['--dataset'] = tmp_path / 'nowhere'
        expected = 'nowhere'
    elif problem == 'rgb mask':
        mask_path = root / 'Annotations' / '480p' / 'seq' / '00000.png'
        Image.fromarray(np.stack([masks[0] * 200] * 3, axis=-1)).save(mask_path)
        expected = '00000.png: mask is a RGB colour image'
    elif problem == 'cuda':
        flags['--gpu'] = 0
        expected = 'CUDA is not available'
    elif problem == 'not a checkpoint':
        (tmp_path / 'weights.pth').write_text('not weights')
        flags['--resume'] = tmp_path / 'weights.pth'
        expected = 'weights.pth: not a PyTorch checkpoint'
    elif problem == 'unknown sequence':
        flags['--sequences'] = 'seq,other'
        expected = 'other: not among the videos of'
    if problem == 'cuda' and __import__('torch').cuda.is_available():
        pytest.skip('this machine has CUDA')
    result = run_script('eval.py', *[v for item in flags.items() for v in item], check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: ') and expected in lines[0], result.stderr


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_two_torchrun_processes_split_the_videos_and_match_one_process(tmp_path, recipe_checkpoint):
    root = tmp_path / 'DAVIS'
    for i in range(3):
        frames, masks = moving_shapes(10 + i, 4, 32, 48, 1)
        write_davis(root, f'seq{i}', frames, masks)
    common = ['--level', 1, '--dataset', root, '--resume', recipe_checkpoint, '--gpu', -1, '--workers', 0, '--score']
    run_script('eval.py', *common, '--output', tmp_path / 'single')
    env = dict(os.environ, MASTER_ADDR='127.0.0.1', OMP_NUM_THREADS='1')
    result = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2', '--master_addr', '127.0.0.1',
         '--master_port', str(free_port()), os.path.join(REPO, 'eval.py'), *map(str, common),
         '--output', str(tmp_path / 'multi')], cwd=REPO, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    single = tmp_path / 'single' / 'AFB-URR_DAVIS_17val'
    multi = tmp_path / 'multi' / 'AFB-URR_DAVIS_17val'
    for i in range(3):
        for t in range(4):
            name = f'seq{i}/{t:05d}.png'
            np.testing.assert_array_equal(read_label_mask(single / name), read_label_mask(multi / name))
    assert (single / 'global_results-val.csv').read_text() == (multi / 'global_results-val.csv').read_text()


def test_a_corrupt_frame_stops_with_its_name_keeps_finished_masks_and_leaves_no_partial_video(tmp_path, recipe_checkpoint):
    root = tmp_path / 'long'
    frames, masks = moving_shapes(8, 6, 32, 48, 1)
    write_long_video(root, 'clip', frames, masks)
    corrupt = root / 'JPEGImages' / 'clip' / '00004.jpg'
    corrupt.write_bytes(b'not a jpeg')
    flags = ['--level', 3, '--dataset', root, '--resume', recipe_checkpoint, '--gpu', -1, '--viz', '--workers', 0,
             '--output', tmp_path / 'output']
    result = run_script('eval.py', *flags, check=False)
    assert result.returncode == 2 and f'error: {corrupt}: cannot read frame image' in result.stderr
    masks_dir = tmp_path / 'output' / 'AFB-URR_LongVideo' / 'clip'
    assert {'00000.png', '00001.png', '00002.png'} <= set(os.listdir(masks_dir))
    overlay_dir = tmp_path / 'output' / 'overlay' / 'AFB-URR_LongVideo'
    assert os.listdir(overlay_dir) == ['clip']           # no MP4, not even a temporary one
    assert not [n for n in os.listdir(masks_dir) if n.startswith('.')]

    Image.fromarray(frames[4]).save(corrupt)
    run_script('eval.py', *flags)
    assert (overlay_dir / 'clip.mp4').is_file() and len(os.listdir(masks_dir)) == 6


def test_a_video_file_cut_short_is_segmented_as_far_as_it_decodes_with_one_warning(tmp_path, recipe_checkpoint):
    frames, masks = moving_shapes(3, 8, 48, 64, 1)
    clip = tmp_path / 'clip.mp4'
    decoded = write_truncated_video(clip, frames)
    write_label_mask(tmp_path / 'first.png', masks[0])
    result = run_script('eval.py', '--video', clip, '--mask', tmp_path / 'first.png', '--resume', recipe_checkpoint,
                        '--device', 'cpu', '--workers', 0, '--output', tmp_path / 'out')
    assert [line for line in result.stderr.splitlines() if 'warning' in line] == [
        f'warning: {clip}: only {decoded} of the 8 frames its container states could be decoded: the file may '
        f'be truncated or corrupt; results stop at frame {decoded - 1}']
    assert sorted(os.listdir(tmp_path / 'out' / 'AFB-URR_Video' / 'clip')) == [f'{t:05d}.png' for t in range(decoded)]


def test_a_video_with_a_name_of_244_bytes_gets_its_masks_and_overlay_video(tmp_path, recipe_checkpoint):
    frames, masks = moving_shapes(4, 3, 32, 48, 1)
    name = '长' * 80  # + '.mp4': 244 bytes; the overlay MP4's temporary would have about 20 more
    clip = tmp_path / f'{name}.mp4'
    with Mp4Writer(str(tmp_path / 'clip.mp4'), 10) as writer:
        for frame in frames:
            writer.write(frame)
    os.rename(tmp_path / 'clip.mp4', clip)
    write_label_mask(tmp_path / 'first.png', masks[0])
    out = tmp_path / 'out'
    run_script('eval.py', '--video', clip, '--mask', tmp_path / 'first.png', '--resume', recipe_checkpoint,
               '--device', 'cpu', '--workers', 0, '--viz', '--output', out)
    assert sorted(os.listdir(out / 'AFB-URR_Video' / name)) == [f'{t:05d}.png' for t in range(3)]
    assert sorted(os.listdir(out / 'overlay' / 'AFB-URR_Video')) == [name, f'{name}.mp4']
