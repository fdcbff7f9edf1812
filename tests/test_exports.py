"""dataset.exports and eval.py --export: every kind read back (the COCO JSON by a real pycocotools COCO object,
the MP4 by a decoder), written whole or not at all, names checked, and a rerun that writes only what is missing."""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

import eval as eval_script
from dataset.exports import LabelledClip, missing_kinds, write_exports
from dataset.frame_stream import read_video_frames
from tests.conftest import REPO, run_script
from tests.support.synth import moving_shapes, write_long_video
from tests.test_bad_input import one_error_line
from utils.errors import UserError
from utils.masks import read_label_mask, write_label_mask
from utils.video_writer import Mp4Writer

H, W = 30, 40


def synthetic_clip(given=(0, 1, 3)):
    """4 frames with objects 3 and 7 (7 absent from frame 1); frames not in `given` have no mask yet."""
    rng = np.random.RandomState(0)
    frames = rng.randint(0, 256, (4, H, W, 3)).astype(np.uint8)
    labels = np.zeros((4, H, W), np.uint8)
    labels[:, 5:15, 5:20] = 3
    labels[:, 18:28, 22:38] = 7
    labels[1][labels[1] == 7] = 0
    masks = {t: labels[t] for t in given}
    clip = LabelledClip(name='clip', frame_names=[f'f{t}' for t in range(4)], fps=12.0, labels=masks.get,
                        frames_rgb=lambda: iter(frames))
    return clip, frames, masks


def read_png(path):
    with Image.open(path) as image:
        return image.mode, np.array(image)


def coco_labels(coco, image_id):
    """The label mask that a COCO file's annotations of one image decode to (pycocotools)."""
    image = coco.imgs[image_id]
    labels = np.zeros((image['height'], image['width']), np.uint8)
    for annotation in coco.loadAnns(coco.getAnnIds(imgIds=[image_id])):
        mask = coco.annToMask(annotation).astype(bool)
        assert annotation['area'] == mask.sum()
        x, y, w, h = annotation['bbox']
        rows, columns = np.nonzero(mask)
        assert (x, y, w, h) == (columns.min(), rows.min(), np.ptp(columns) + 1, np.ptp(rows) + 1)
        assert not labels[mask].any()  # objects do not overlap
        labels[mask] = annotation['category_id']
    return labels


def check_coco(path, masks_by_image, file_names=None):
    """The COCO file at `path` decodes to `masks_by_image` ({image id: labels}); returns the COCO object."""
    coco = COCO(str(path))
    assert sorted(coco.imgs) == sorted(masks_by_image)
    labels = sorted({int(v) for masks in masks_by_image.values() for v in np.unique(masks) if v})
    assert sorted(coco.getCatIds()) == labels
    for image_id, masks in masks_by_image.items():
        np.testing.assert_array_equal(coco_labels(coco, image_id), masks)
        if file_names:
            assert coco.imgs[image_id]['file_name'] == file_names[image_id - 1]
    return coco


def decoded(path):
    """(frames RGB, fps) of a video file."""
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS)
    capture.release()
    return [rgb for _, rgb in read_video_frames(str(path))], fps


def test_every_kind_reads_back_to_the_masks_and_the_frames(tmp_path):
    clip, frames, masks = synthetic_clip(given=(0, 1, 3))  # frame 2 not segmented yet
    folder = tmp_path / 'export'
    write_exports(folder, ('palette', 'objects', 'rgba', 'coco', 'mp4'), clip)
    assert sorted(os.listdir(folder)) == ['coco.json', 'masks', 'objects', 'overlay.mp4', 'rgba']

    assert sorted(os.listdir(folder / 'masks')) == ['f0.png', 'f1.png', 'f3.png']
    for t in (0, 1, 3):
        assert read_png(folder / 'masks' / f'f{t}.png')[0] == 'P'
        np.testing.assert_array_equal(read_label_mask(folder / 'masks' / f'f{t}.png'), masks[t])

    empty = np.zeros((H, W), np.uint8)
    for label in (3, 7):  # every frame of every object, empty where it is absent or not segmented
        assert sorted(os.listdir(folder / 'objects' / str(label))) == [f'f{t}.png' for t in range(4)]
        for t in range(4):
            expected = masks.get(t, empty) == label
            mode, matte = read_png(folder / 'objects' / str(label) / f'f{t}.png')
            assert mode == 'L'
            np.testing.assert_array_equal(matte, expected * 255)
            mode, rgba = read_png(folder / 'rgba' / str(label) / f'f{t}.png')
            assert mode == 'RGBA'
            np.testing.assert_array_equal(rgba[..., :3], frames[t])
            np.testing.assert_array_equal(rgba[..., 3], expected * 255)
    assert not read_png(folder / 'objects' / '7' / 'f1.png')[1].any()

    coco = check_coco(folder / 'coco.json', {t + 1: masks.get(t, empty) for t in range(4)},
                      [f'f{t}.jpg' for t in range(4)])
    assert [len(coco.getAnnIds(imgIds=[t + 1])) for t in range(4)] == [2, 1, 0, 2]
    assert coco.loadCats([3])[0]['name'] == 'object 3'

    video, fps = decoded(folder / 'overlay.mp4')
    assert len(video) == 4 and video[0].shape == (H, W, 3) and fps == pytest.approx(12.0)


def test_a_failed_export_keeps_the_earlier_one_whole_and_leaves_no_temporaries(tmp_path):
    clip, frames, masks = synthetic_clip()
    folder = tmp_path / 'export'
    write_exports(folder, ('objects', 'coco'), clip)
    before = {path: open(os.path.join(root, path), 'rb').read()
              for root, _, names in os.walk(folder) for path in names}
    clip.frames_rgb = lambda: iter([frames[0], frames[1][:10]])  # frame 1 comes back another size
    with pytest.raises(UserError, match=r'^clip: frame f1 is 40x10, its mask 40x30; masks and frames must have one'):
        write_exports(folder, ('objects', 'rgba', 'coco', 'mp4'), clip)
    assert sorted(os.listdir(folder)) == ['coco.json', 'objects']
    assert before == {path: open(os.path.join(root, path), 'rb').read()
                      for root, _, names in os.walk(folder) for path in names}
    assert missing_kinds(folder, ('objects', 'rgba', 'coco', 'mp4')) == ('rgba', 'mp4')


KILLED_EXPORT = '''
import os, signal, sys
import numpy as np
from dataset.exports import LabelledClip, write_exports
labels = np.zeros((30, 40), np.uint8)
labels[5:15, 5:20] = 1

def frames():
    yield np.zeros((30, 40, 3), np.uint8)
    os.kill(os.getpid(), signal.SIGKILL)

write_exports(sys.argv[1], ('objects', 'rgba', 'coco', 'mp4'),
              LabelledClip('clip', ['a', 'b'], 25.0, lambda t: labels, frames))
'''


def test_what_a_killed_export_leaves_is_removed_by_the_next(tmp_path):
    folder = tmp_path / 'export'
    killed = subprocess.run([sys.executable, '-c', KILLED_EXPORT, str(folder)], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert killed.returncode == -9, killed.stderr
    left = os.listdir(folder)
    assert left and all(name.startswith('.') and '.tmp' in name for name in left)  # only temporaries
    clip, _, masks = synthetic_clip(given=(0, 1, 2, 3))
    write_exports(folder, ('objects', 'rgba', 'coco', 'mp4'), clip)
    assert sorted(os.listdir(folder)) == ['coco.json', 'objects', 'overlay.mp4', 'rgba']


@pytest.mark.parametrize('name', ['../escape', '', 'a/b'])
def test_frame_names_that_are_not_plain_names_are_refused_before_anything_is_written(tmp_path, name):
    clip, _, _ = synthetic_clip()
    clip.frame_names = ['f0', name, 'f2', 'f3']
    with pytest.raises(UserError, match='is not a plain name'):
        write_exports(tmp_path / 'export', ('objects', 'coco'), clip)
    assert not (tmp_path / 'export').exists() and os.listdir(tmp_path) == []


# ---------------------------------------------------------------- eval.py --export
@pytest.mark.parametrize('value, problem', [
    ('coco,masks', "unknown kind 'masks'"), ('palette', "unknown kind 'palette'"), (',', 'names no kind')])
def test_export_kinds_are_checked_at_parsing(tmp_path, capsys, value, problem):
    with pytest.raises(SystemExit) as exit_status:
        eval_script.main(['--video', 'v.mp4', '--mask', 'm.png', '--resume', 'x.pth', '--export', value])
    assert exit_status.value.code == 2
    assert (f'argument --export: {value}: {problem}; give one or more of objects, rgba, coco, mp4, separated by '
            f'commas') in one_error_line(capsys)


def test_eval_exports_a_video_file_that_reads_back_to_its_masks_and_frames(tmp_path, recipe_checkpoint):
    frames, masks = moving_shapes(4, 6, 48, 64, 2)
    with Mp4Writer(tmp_path / 'clip.mp4', fps=10) as writer:
        for frame in frames:
            writer.write(frame)
    write_label_mask(tmp_path / 'first.png', masks[0])
    out = tmp_path / 'out'
    result = run_script('eval.py', '--video', tmp_path / 'clip.mp4', '--mask', tmp_path / 'first.png', '--resume',
                        recipe_checkpoint, '--device', 'cpu', '--output', out, '--export', 'objects,rgba,coco,mp4')
    folder = out / 'export' / 'AFB-URR_Video' / 'clip'
    assert f'clip: exported objects, rgba, coco.json, overlay.mp4 in {folder}' in result.stdout
    results = [read_label_mask(out / 'AFB-URR_Video' / 'clip' / f'{t:05d}.png') for t in range(6)]
    check_coco(folder / 'coco.json', {t + 1: results[t] for t in range(6)}, [f'{t:05d}.jpg' for t in range(6)])
    video, _ = decoded(tmp_path / 'clip.mp4')
    for t in range(6):
        for label in (1, 2):
            np.testing.assert_array_equal(read_png(folder / 'objects' / str(label) / f'{t:05d}.png')[1],
                                          (results[t] == label) * 255)
            rgba = read_png(folder / 'rgba' / str(label) / f'{t:05d}.png')[1]
            np.testing.assert_array_equal(rgba[..., :3], video[t])  # the frames as decoded, at their own size
            np.testing.assert_array_equal(rgba[..., 3], (results[t] == label) * 255)
    overlay_video, fps = decoded(folder / 'overlay.mp4')
    assert len(overlay_video) == 6 and fps == pytest.approx(10.0)


def test_a_rerun_exports_only_the_kinds_missing_for_videos_already_done(tmp_path, recipe_checkpoint):
    frames, masks = moving_shapes(3, 5, 32, 48, 2)
    write_long_video(tmp_path / 'long', 'walk', frames, masks)
    out = tmp_path / 'out'
    flags = ['--level', 3, '--dataset', tmp_path / 'long', '--resume', recipe_checkpoint, '--device', 'cpu',
             '--output', out, '--workers', 0]
    run_script('eval.py', *flags, '--export', 'coco')
    folder = out / 'export' / 'AFB-URR_LongVideo' / 'walk'
    results = [read_label_mask(out / 'AFB-URR_LongVideo' / 'walk' / f'{t:05d}.png') for t in range(5)]
    check_coco(folder / 'coco.json', {t + 1: results[t] for t in range(5)}, [f'{t:05d}.jpg' for t in range(5)])
    with open(folder / 'coco.json') as file:
        assert json.load(file)['info']['fps'] == 25.0  # a frame folder's
    stamp = os.path.getmtime(folder / 'coco.json')

    again = run_script('eval.py', *flags, '--export', 'coco,objects')
    assert 'walk: outputs already written, skipped' in again.stdout
    assert f'walk: exported objects in {folder}' in again.stdout
    assert os.path.getmtime(folder / 'coco.json') == stamp
    assert sorted(os.listdir(folder / 'objects')) == ['1', '2']
