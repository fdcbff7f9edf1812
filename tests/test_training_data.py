"""Training datasets (levels 0, 1, 2) and their paired transforms."""
import os
import random
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from PIL import Image

from dataset import transforms as P
from dataset.training import (TRAINING_LEVELS, DAVISTrain, PretrainImages, YouTubeTrain, read_pretrain_sets,
                              training_dataset)
from model.training.rng_state import seed_everything
from tests.support.synth import moving_shapes, write_davis, write_png_claiming
from utils.errors import UserError
from utils.images import MAX_IMAGE_PIXELS
from utils.masks import label_mask_image, write_label_mask
from utils.palette import PALETTE

H, W, S = 96, 128, 64
BACKGROUND = (40, 110, 40)
COLOURS = {1: (220, 30, 30), 2: (30, 30, 220)}  # object 1 red, object 2 blue


def flat_video(n_frames, height=H, width=W):
    """Flat-coloured objects drifting over a flat background: a red box (1) and a blue ellipse (2)."""
    yy, xx = np.mgrid[0:height, 0:width]
    frames = np.zeros((n_frames, height, width, 3), np.uint8)
    masks = np.zeros((n_frames, height, width), np.uint8)
    for t in range(n_frames):
        frames[t] = BACKGROUND
        box = (yy >= 20 + 2 * t) & (yy < 56 + 2 * t) & (xx >= 16 + 3 * t) & (xx < 64 + 3 * t)
        ellipse = ((yy - 55 + t) / 20.0) ** 2 + ((xx - 85 + 2 * t) / 24.0) ** 2 <= 1
        for label, inside in ((1, box), (2, ellipse)):
            frames[t][inside] = COLOURS[label]
            masks[t][inside] = label
    return frames, masks


def _save_jpg(path, frame):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(frame).save(path, quality=95)


def write_youtube_train(root, name, frames, masks, names=None, skip_masks=()):
    names = names or [f'{5 * t:05d}' for t in range(len(frames))]
    for t, (frame, mask) in enumerate(zip(frames, masks)):
        _save_jpg(os.path.join(root, 'JPEGImages', name, names[t] + '.jpg'), frame)
        if t not in skip_masks:
            write_label_mask(os.path.join(root, 'Annotations', name, names[t] + '.png'), mask)


def write_pretrain(root, set_name, images, masks, names=None, mask_names=None):
    names = names or [f'img_{i:03d}' for i in range(len(images))]
    mask_names = mask_names or names
    for name, image in zip(names, images):
        _save_jpg(os.path.join(root, 'JPEGImages', set_name, name + '.jpg'), image)
    for name, mask in zip(mask_names, masks):
        write_label_mask(os.path.join(root, 'Annotations', set_name, name + '.png'), mask)


def check_clip(item, clip_n, size, max_obj_n):
    frames, masks, obj_n, info = item
    assert frames.dtype == torch.float32 and frames.shape == (clip_n, 3, size, size)
    assert 0 <= frames.min() and frames.max() <= 1
    assert isinstance(obj_n, int) and 2 <= obj_n <= max_obj_n
    assert masks.dtype == torch.float32 and masks.shape == (clip_n, obj_n, size, size)
    assert set(torch.unique(masks).tolist()) <= {0.0, 1.0}
    assert torch.equal(masks.sum(1), torch.ones(clip_n, size, size))
    assert masks[0, 1:].flatten(1).sum(1).min() > 0  # every chosen object is in the first frame
    assert len(info['frames']) == clip_n and len(info['objects']) == obj_n - 1
    assert isinstance(info['name'], str)


def colour_class(frame):
    """Per pixel: 1 if clearly red, 2 if clearly blue, 0 otherwise, of a (3, S, S) tensor."""
    r, g, b = frame
    cls = torch.zeros_like(r, dtype=torch.long)
    cls[r - torch.maximum(g, b) > 0.25] = 1
    cls[b - torch.maximum(r, g) > 0.25] = 2
    return cls


def erode(mask, radius=2):
    k = 2 * radius + 1
    return 1 - TF.max_pool2d((1 - mask)[None, None], k, stride=1, padding=radius)[0, 0]


def check_alignment(item):
    """Where the mask says object k, the image shows k's colour, and the background shows neither."""
    frames, masks, obj_n, info = item
    checked = 0
    for t in range(len(frames)):
        cls = colour_class(frames[t])
        for channel in range(obj_n):
            core = erode(masks[t, channel]).bool()
            if core.sum() < 10:
                continue
            expected = 0 if channel == 0 else info['objects'][channel - 1]
            if channel == 0:
                # Unchosen objects count as background: only chosen colours must be absent.
                for label in info['objects']:
                    assert (cls[core] == label).float().mean() < 0.02, (t, channel)
            else:
                assert (cls[core] == expected).float().mean() > 0.95, (t, channel, expected)
            checked += 1
    assert checked > len(frames)


# ---------------------------------------------------------------- transforms

def test_to_onehot_given_and_random_objects():
    labels = np.array([[0, 1, 2, 3], [255, 1, 2, 3], [0, 0, 3, 3]], np.uint8)
    onehot, objs = P.to_onehot(labels, 3, obj_list=[3, 1])
    assert objs == [3, 1] and onehot.dtype == torch.float32 and onehot.shape == (3, 3, 4)
    assert torch.equal(onehot[1], torch.from_numpy((labels == 3).astype(np.float32)))
    assert torch.equal(onehot[2], torch.from_numpy((labels == 1).astype(np.float32)))
    assert onehot[0, 1, 0] == 1 and onehot[0, 0, 2] == 1  # void and unchosen objects are background
    assert torch.equal(onehot.sum(0), torch.ones(3, 4))
    seen = set()
    for seed in range(30):
        random.seed(seed)
        onehot, objs = P.to_onehot(labels, 3)
        assert len(objs) == 2 and set(objs) <= {1, 2, 3} and onehot.shape == (3, 3, 4)
        seen.add(tuple(objs))
    assert len(seen) > 3  # random choice and order
    onehot, objs = P.to_onehot(labels, 10, pad=False)
    assert sorted(objs) == [1, 2, 3] and onehot.shape == (4, 3, 4)
    onehot, objs = P.to_onehot(np.zeros((2, 2), np.uint8), 3)
    assert objs == [] and torch.equal(onehot[0], torch.ones(2, 2)) and onehot[1:].sum() == 0


def _palette_pair(seed):
    rng = np.random.RandomState(seed)
    labels = np.zeros((H, W), np.uint8)
    labels[10:50, 20:70] = 1
    labels[40:90, 60:120] = 2
    labels[0:8, :] = 255
    labels[rng.rand(H, W) < 0.02] = 3
    image = Image.fromarray(np.array(PALETTE, np.uint8)[labels])
    return image, label_mask_image(labels)


def test_paired_affine_and_flip_are_exact():
    torch.manual_seed(0)
    affine = P.RandomAffine(20, (0.1, 0.1), (0.9, 1.1), 10)
    flip = P.RandomHorizontalFlip(1.0)
    for seed in range(5):
        image, mask = _palette_pair(seed)
        out_image, out_mask = flip(*affine(image, mask))
        assert out_mask.mode == 'P' and out_image.size == out_mask.size == (W, H)
        labels = np.array(out_mask)
        assert not np.array_equal(labels, np.array(mask))
        # Same parameters, NEAREST on both: the image is the palette colour of its label everywhere.
        assert np.array_equal(np.array(out_image), np.array(PALETTE, np.uint8)[labels])
        assert set(np.unique(labels)) <= {0, 1, 2, 3, 255}


def test_paired_resized_crop_keeps_labels_and_alignment():
    torch.manual_seed(1)
    crop = P.RandomResizedCrop(S, scale=(0.3, 0.5), ratio=(0.95, 1.05))
    for seed in range(5):
        image, mask = _palette_pair(seed)
        out_image, out_mask = crop(image, mask)
        assert out_image.size == out_mask.size == (S, S)
        labels = np.array(out_mask)
        assert set(np.unique(labels)) <= {0, 1, 2, 3, 255}
        expected = np.array(PALETTE, np.uint8)[labels].astype(int)
        same = np.abs(np.array(out_image).astype(int) - expected).max(-1) <= 2
        assert same.mean() > 0.7  # bilinear image vs nearest mask differ only near edges


def test_color_jitter_leaves_the_mask():
    image, mask = _palette_pair(0)
    torch.manual_seed(0)
    out_image, out_mask = P.ColorJitter(0.5, 0.5, 0.5, 0.1)(image, mask)
    assert out_mask is mask and np.array(out_image).shape == (H, W, 3)
    assert not np.array_equal(np.array(out_image), np.array(image))


# ---------------------------------------------------------------- the three levels

@pytest.fixture
def davis_root(tmp_path):
    root = str(tmp_path / 'davis')
    for i, name in enumerate(['bear', 'cows']):
        frames, masks = moving_shapes(i, 7, H, W, 3)
        write_davis(root, name, frames, masks, split='train')
    return root


@pytest.fixture
def flat_roots(tmp_path):
    frames, masks = flat_video(6)
    davis = str(tmp_path / 'davis_flat')
    write_davis(davis, 'flat', frames, masks, split='train')
    youtube = str(tmp_path / 'youtube_flat')
    write_youtube_train(youtube, 'vid0', frames, masks)
    pretrain = str(tmp_path / 'pretrain_flat')
    write_pretrain(pretrain, 'ECSSD', frames[:3], masks[:3])
    return {1: davis, 2: youtube, 0: pretrain}


def test_davis_clips(davis_root):
    ds = DAVISTrain(davis_root, output_size=S, clip_n=4, obj_n=3)
    assert len(ds) == 2 and [v[0] for v in ds.videos] == ['bear', 'cows']
    for seed in range(4):
        seed_everything(seed)
        item = ds[seed % 2]
        check_clip(item, 4, S, 3)
        assert len(set(item[3]['frames'])) == 4 and set(item[3]['frames']) <= set(range(7))
        assert item[3]['name'] == ['bear', 'cows'][seed % 2]
    loader = torch.utils.data.DataLoader(ds, batch_size=1, shuffle=True)
    frames, masks, obj_n, info = next(iter(loader))
    assert frames.shape == (1, 4, 3, S, S) and masks.shape[:2] == (1, 4) and masks.shape[2] == obj_n.item()


def test_youtube_clips(tmp_path):
    root = str(tmp_path / 'yt')
    for i in range(2):
        frames, masks = moving_shapes(10 + i, 5, H, W, 2)
        write_youtube_train(root, f'vid{i}', frames, masks)
    ds = YouTubeTrain(root, output_size=S, clip_n=3, obj_n=2)
    assert len(ds) == 2
    for seed in range(3):
        seed_everything(seed)
        check_clip(ds[seed % 2], 3, S, 2)


def test_pretrain_clips(tmp_path):
    root = str(tmp_path / 'pre')
    frames, masks = moving_shapes(3, 4, H, W, 2)
    write_pretrain(root, 'MSRA10K', frames[:2], masks[:2])
    write_pretrain(root, 'COCO', frames[2:], masks[2:])
    ds = PretrainImages(root, sets=['COCO', 'MSRA10K'], output_size=S, clip_n=3, obj_n=3)
    assert len(ds) == 4 and ds.sets == ['COCO', 'MSRA10K']
    seed_everything(0)
    item = ds[3]
    check_clip(item, 3, S, 3)
    assert item[3]['name'] == 'MSRA10K/img_001' and item[3]['frames'] == [0, 0, 0]
    assert isinstance(training_dataset(0, root, sets=['COCO'], output_size=S), PretrainImages)


def flat_dataset(flat_roots, level, clip_n):
    """The level's dataset over the flat-colour layouts (pretraining: its ECSSD set)."""
    sets = {'sets': ['ECSSD']} if level == 0 else {}
    return training_dataset(level, flat_roots[level], output_size=S, clip_n=clip_n, obj_n=3, **sets)


@pytest.mark.parametrize('level', [0, 1, 2])
def test_masks_stay_aligned_with_frames(flat_roots, level):
    ds = flat_dataset(flat_roots, level, clip_n=4)
    moved = 0
    for seed in range(4):
        seed_everything(seed)
        item = ds[0]
        check_clip(item, 4, S, 3)
        check_alignment(item)
        masks = item[1]
        moved += int(any(not torch.equal(masks[0], masks[t]) for t in range(1, 4)))
    assert moved == 4  # objects move between frames, and their pixels move with them


@pytest.mark.parametrize('level', [0, 1, 2])
def test_fixed_seed_gives_the_same_clip(flat_roots, level):
    ds = flat_dataset(flat_roots, level, clip_n=3)
    items = []
    for seed in (5, 5, 6):
        seed_everything(seed)
        items.append(ds[0])
    a, b, c = items
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and a[2:] == b[2:]
    assert not torch.equal(a[0], c[0])


# ---------------------------------------------------------------- sampling rules

def _corner_video(tmp_path, n_frames=3, object_anywhere=True):
    frames = np.zeros((n_frames, H, W, 3), np.uint8)
    masks = np.zeros((n_frames, H, W), np.uint8)
    if object_anywhere:
        frames[:, 4:20, 4:20] = COLOURS[1]
        masks[:, 4:20, 4:20] = 1
    root = tmp_path / 'corner'
    if not root.exists():  # a second call reuses the video (its list names it once)
        write_davis(str(root), 'corner', frames, masks, split='train')
    return str(root)


class BoxStub:
    """Replaces a crop's get_params: the first `misses` calls give an object-free box, then one with the object."""

    def __init__(self, misses):
        self.misses = misses
        self.calls = 0

    def __call__(self, image):
        self.calls += 1
        return (50, 70, 40, 40) if self.calls <= self.misses else (0, 0, 48, 48)


def test_crop_is_retried_until_it_holds_an_object(tmp_path):
    ds = DAVISTrain(_corner_video(tmp_path), output_size=S, clip_n=1, obj_n=3)
    ds.crop.get_params = stub = BoxStub(misses=4)
    frames, masks, obj_n, info = ds[0]
    assert stub.calls == 5 and obj_n == 2 and masks[0, 1].sum() > 0

    # Later frames retry until they hold a chosen object.
    ds = DAVISTrain(_corner_video(tmp_path), output_size=S, clip_n=2, obj_n=3)
    ds.affine = ds.jitter = lambda image, mask: (image, mask)
    calls = []

    def frame1_misses(image):  # frame 0: a hit; frame 1: three misses, then a hit
        calls.append(1)
        return (0, 0, 48, 48) if len(calls) == 1 or len(calls) > 4 else (50, 70, 40, 40)
    ds.crop.get_params = frame1_misses
    frames, masks, obj_n, info = ds[0]
    assert len(calls) == 5 and obj_n == 2 and masks[1, 1].sum() > 0


def test_crop_gives_up_after_ten_tries_and_clip_is_resampled(tmp_path):
    ds = DAVISTrain(_corner_video(tmp_path), output_size=S, clip_n=2, obj_n=3, max_retries=3)
    ds.crop.get_params = stub = BoxStub(misses=10 ** 6)
    frames, masks, obj_n, info = ds[0]
    assert stub.calls == 3 * 10  # 10 crop tries on the first frame, for each of the 3 clip attempts
    assert obj_n == 1 and masks.shape == (2, 1, S, S) and torch.equal(masks, torch.ones(2, 1, S, S))
    assert frames.shape == (2, 3, S, S) and info['objects'] == []

    # A first frame whose crop misses 10 times is sampled again, and the next attempt can succeed.
    ds.crop.get_params = stub = BoxStub(misses=10)
    frames, masks, obj_n, info = ds[0]
    assert obj_n == 2 and stub.calls >= 12


@pytest.mark.parametrize('level', [0, 1])
def test_a_clip_whose_first_frame_crops_find_no_object_is_skipped_as_released(tmp_path, level):
    # The released loop skips such a clip (no update); it does not draw another one.
    root = _corner_video(tmp_path)
    if level == 0:
        frames, masks = np.zeros((1, H, W, 3), np.uint8), np.zeros((1, H, W), np.uint8)
        frames[:, 4:20, 4:20], masks[:, 4:20, 4:20] = COLOURS[1], 1  # the object in a corner, as _corner_video's
        root = str(tmp_path / 'pretrain')
        write_pretrain(root, 'ECSSD', frames, masks)
    ds = training_dataset(level, root, output_size=S, clip_n=2, **({'sets': ['ECSSD']} if level == 0 else {}))
    ds.crop.get_params = stub = BoxStub(misses=ds.crop_tries)
    frames, masks, obj_n, info = ds[0]
    assert stub.calls == ds.crop_tries == (10 if level else 1)
    assert obj_n == 1 and info['objects'] == []


def test_video_without_objects_gives_obj_n_1(tmp_path):
    ds = DAVISTrain(_corner_video(tmp_path, object_anywhere=False), output_size=S, clip_n=2, obj_n=3, max_retries=5)
    frames, masks, obj_n, info = ds[0]
    assert obj_n == 1 and masks.shape == (2, 1, S, S)


def test_at_most_obj_n_minus_1_objects_from_the_first_frame(tmp_path):
    root = str(tmp_path / 'many')
    frames, masks = moving_shapes(7, 4, H, W, 4)
    write_davis(root, 'many', frames, masks, split='train')
    ds = DAVISTrain(root, output_size=S, clip_n=4, obj_n=3)
    chosen = set()
    for seed in range(8):
        seed_everything(seed)
        frames_t, masks_t, obj_n, info = ds[0]
        assert obj_n == 3
        first = info['frames'][0]
        assert set(info['objects']) <= set(np.unique(masks[first]).tolist()) - {0}
        chosen.update(info['objects'])
    assert len(chosen) >= 3


# ---------------------------------------------------------------- bad input

def test_davis_bad_input(tmp_path, davis_root):
    missing = str(tmp_path / 'nowhere')
    with pytest.raises(UserError, match='nowhere'):
        training_dataset(1, missing)
    os.makedirs(tmp_path / 'empty_davis')
    with pytest.raises(UserError, match=r'JPEGImages/480p: folder not found; expected the DAVIS 2017 layout'):
        training_dataset(1, str(tmp_path / 'empty_davis'))
    os.remove(os.path.join(davis_root, 'Annotations', '480p', 'cows', '00003.png'))
    with pytest.raises(UserError, match=r'JPEGImages/480p/cows.*do not pair up'):
        training_dataset(1, davis_root)
    with open(os.path.join(davis_root, 'ImageSets', '2017', 'train.txt'), 'a') as f:
        f.write('ghost\n')
    os.remove(os.path.join(davis_root, 'JPEGImages', '480p', 'cows', '00003.jpg'))  # cows pairs up again
    with pytest.raises(UserError, match='ghost'):
        training_dataset(1, davis_root)


def test_youtube_bad_input(tmp_path, capsys):
    with pytest.raises(UserError, match='JPEGImages'):
        os.makedirs(tmp_path / 'yt_empty')
        training_dataset(2, str(tmp_path / 'yt_empty'))
    root = str(tmp_path / 'yt')
    frames, masks = moving_shapes(0, 5, H, W, 2)
    write_youtube_train(root, 'good', frames, masks, skip_masks=(1, 3))
    write_youtube_train(root, 'bare', frames[:2], masks[:2], skip_masks=(0, 1))
    write_label_mask(os.path.join(root, 'Annotations', 'bare', 'zzz.png'), masks[0])
    os.makedirs(os.path.join(root, 'JPEGImages', 'unannotated'))
    ds = YouTubeTrain(root, output_size=S, clip_n=3, obj_n=3)
    out = capsys.readouterr().out
    assert 'good' in out and '2 frames without a mask' in out
    assert 'bare: no frame has a mask' in out
    assert '1 of 3 videos have no annotation folder (unannotated)' in out
    assert [v[0] for v in ds.videos] == ['good'] and len(ds.videos[0][1]) == 3
    seed_everything(0)
    item = ds[0]
    check_clip(item, 3, S, 3)
    assert set(item[3]['frames']) == {0, 1, 2}


def test_pretrain_bad_input(tmp_path, capsys):
    with pytest.raises(UserError, match='pretrain.txt'):
        read_pretrain_sets(str(tmp_path / 'assets' / 'pretrain.txt'))
    lst = tmp_path / 'pretrain.txt'
    lst.write_text('COCO\nECSSD\n\n')
    assert read_pretrain_sets(str(lst)) == ['COCO', 'ECSSD']

    root = str(tmp_path / 'pre')
    frames, masks = moving_shapes(1, 3, H, W, 2)
    write_pretrain(root, 'ECSSD', frames, masks[:2])  # 3 images, 2 masks: set skipped
    write_pretrain(root, 'MSRA10K', frames, masks, mask_names=['img_000', 'img_001', 'other'])
    write_pretrain(root, 'COCO', frames[:1], masks[:1])
    ds = PretrainImages(root, sets=['COCO', 'ECSSD', 'MSRA10K', 'PASCAL-S'], output_size=S, clip_n=2, obj_n=3)
    out = capsys.readouterr().out
    assert 'ECSSD' in out and '3 images but 2 masks' in out
    assert 'PASCAL-S' in out and 'not found' in out
    assert 'MSRA10K' in out and '1 images without a mask' in out
    assert ds.sets == ['COCO', 'MSRA10K'] and len(ds) == 3
    assert [n for n, _, _ in ds.images] == ['COCO/img_000', 'MSRA10K/img_000', 'MSRA10K/img_001']
    with pytest.raises(UserError, match='no usable pretrain image'):
        training_dataset(0, root, sets=['ECSSD', 'PASCAL-S'])
    with pytest.raises(UserError, match='nowhere'):
        training_dataset(0, str(tmp_path / 'nowhere'), sets=['COCO'])


def test_mask_of_another_size_is_a_user_error_when_the_dataset_is_made(tmp_path):
    root = _corner_video(tmp_path)
    mask = os.path.join(root, 'Annotations', '480p', 'corner', '00001.png')
    write_label_mask(mask, np.ones((10, 10), np.uint8))
    with pytest.raises(UserError) as error:
        DAVISTrain(root, output_size=S, clip_n=3, obj_n=3)
    assert str(error.value) == (f'{mask}: mask is 10x10 but its image {mask[:-4].replace("Annotations", "JPEGImages")}'
                                f'.jpg is {W}x{H}; a mask must have its frame\'s size')


# Files of each level's dataset, as (frame or image, mask) of the flat video's frame 2.
LEVEL_FILES = {
    0: ('JPEGImages/ECSSD/img_002.jpg', 'Annotations/ECSSD/img_002.png'),
    1: ('JPEGImages/480p/flat/00002.jpg', 'Annotations/480p/flat/00002.png'),
    2: ('JPEGImages/vid0/00010.jpg', 'Annotations/vid0/00010.png'),
}


@pytest.mark.parametrize('level', [0, 1, 2])
@pytest.mark.parametrize('kind', [0, 1], ids=['image', 'mask'])
def test_an_image_or_mask_over_8192x8192_is_refused_when_the_dataset_is_made(flat_roots, level, kind):
    # Clips read their files only when sampled: a too-large mask at frame 2 passed an epoch.
    path = os.path.join(flat_roots[level], LEVEL_FILES[level][kind])
    write_png_claiming(path, 9000, 8000)
    with pytest.raises(UserError) as error:
        training_dataset(level, flat_roots[level], output_size=S, clip_n=2)
    assert str(error.value) == (f'{path}: {("image", "mask")[kind]} file too large (9000x8000); images up to '
                                f'{MAX_IMAGE_PIXELS} pixels (8192x8192) are read: scale it down')


# ---------------------------------------------------------------- the level table

def test_a_level_takes_its_dataset_and_clip_defaults_from_the_table(monkeypatch, davis_root):
    assert {number: level.dataset_class for number, level in TRAINING_LEVELS.items()} == {
        0: PretrainImages, 1: DAVISTrain, 2: YouTubeTrain}
    ds = training_dataset(1, davis_root)
    assert (ds.output_size, ds.clip_n, ds.obj_n) == (400, 6, 3)  # the released train.py's
    monkeypatch.setitem(TRAINING_LEVELS, 1, replace(TRAINING_LEVELS[1], output_size=S, clip_n=2, obj_n=4))
    ds = training_dataset(1, davis_root, clip_n=3)
    assert (ds.output_size, ds.clip_n, ds.obj_n) == (S, 3, 4)
    with pytest.raises(UserError, match=r'--level 5: the training levels are 0 \(pretrain on static images\), '
                                        r'1 \(DAVIS 2017\), 2 \(YouTube-VOS 2018\)'):
        training_dataset(5, davis_root)
