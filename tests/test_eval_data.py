"""Evaluation data: layouts read back, frames streamed, outputs written (fast, tiny synthetic videos)."""
import json
import os
import signal
import threading
import time
from unittest import mock

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.functional import to_tensor

from dataset.eval_sets import (Sequence, davis_sequences, frame_folder_sequence, long_video_sequences, open_video,
                               youtube_sequences)
from dataset.frame_stream import VideoFile, probe_video, stream_frames, stream_video_file
from tests.conftest import run_code
from tests.support.synth import moving_shapes, write_davis, write_long_video, write_youtube
from utils.async_writer import AsyncWriter
from utils.errors import UserError
from utils.masks import read_label_mask, write_label_mask
from utils.images import tensor_to_rgb
from utils.overlay import object_boundary, overlay
from utils.palette import PALETTE
from utils.video_writer import Mp4Writer

H, W = 48, 64


def _video(seed=0, n=4, objects=2, height=H, width=W):
    return moving_shapes(seed, n, height, width, objects)


def _expected_frame(path):
    with Image.open(path) as image:
        return to_tensor(image.convert('RGB'))


# ------------------------------------------------------------------ layouts

def test_davis_layout(tmp_path):
    root = str(tmp_path / 'davis')
    for i, name in enumerate(['bear', 'alpaca']):
        frames, masks = _video(seed=i, n=3 + i)
        write_davis(root, name, frames, masks)
    frames, masks = _video(seed=5)
    write_davis(root, 'trainseq', frames, masks, split='train')
    sequences = davis_sequences(root)
    assert [s.name for s in sequences] == ['bear', 'alpaca']  # split file order
    bear = sequences[0]
    assert bear.frame_names == ['00000', '00001', '00002']
    assert bear.frame_paths == [os.path.join(root, 'JPEGImages', '480p', 'bear', f'{t:05d}.jpg') for t in range(3)]
    assert bear.given_masks == {0: os.path.join(root, 'Annotations', '480p', 'bear', '00000.png')}
    assert bear.annotation_dir == os.path.join(root, 'Annotations', '480p', 'bear')
    assert bear.object_labels == () and bear.frames_to_write is None and bear.resize_height is None
    assert len(sequences[1]) == 4 and bear.first_given == 0
    assert [s.name for s in davis_sequences(root, split='train')] == ['trainseq']


def test_long_video_layout_and_stream(tmp_path):
    root = str(tmp_path / 'long')
    frames, masks = _video(seed=1, n=6, objects=3)
    write_long_video(root, 'blue', frames, masks, annotated=(0, 3, 5))
    (seq,) = long_video_sequences(root)
    assert seq.name == 'blue' and seq.frame_names == [f'{t:05d}' for t in range(6)]
    assert seq.given_masks == {0: os.path.join(root, 'Annotations', 'blue', '00000.png')}
    assert seq.annotation_dir == os.path.join(root, 'Annotations', 'blue')
    for workers in (0, 2):
        items = list(stream_frames(seq, workers=workers, prefetch=2))
        assert [item.index for item in items] == list(range(6))
        assert [item.name for item in items] == seq.frame_names
        for item, path in zip(items, seq.frame_paths):
            assert item.frame.dtype == torch.float32 and item.frame.shape == (3, H, W)
            assert torch.equal(item.frame, _expected_frame(path))
            assert item.original_size == (H, W)
        np.testing.assert_array_equal(items[0].given, masks[0])
        assert items[0].given.dtype == np.uint8
        assert all(item.given is None for item in items[1:])
    assert [item.index for item in stream_frames(seq, workers=0, start=2, stop=4)] == [2, 3]


def test_youtube_layout(tmp_path):
    root = str(tmp_path / 'yt')
    frames, masks = _video(seed=2, n=5, objects=3)
    # object 1 starts at frame 1 (the video starts before any object), objects 2 and 3 share frame 3
    write_youtube(root, 'vid_b', frames, masks, first_frames={1: 1, 2: 3, 3: 3}, listed=[1, 3, 4])
    # frame 3's file also holds object 1, which does not start there: it must not be given
    write_label_mask(os.path.join(root, 'Annotations', 'vid_b', '00015.png'), masks[3])
    small, small_masks = _video(seed=3, n=2, objects=1)
    write_youtube(root, 'vid_a', small, small_masks)
    sequences = youtube_sequences(root)
    assert [s.name for s in sequences] == ['vid_a', 'vid_b']
    seq = sequences[1]
    assert seq.frame_names == ['00000', '00005', '00010', '00015', '00020']
    assert seq.object_labels == (1, 2, 3)
    assert seq.frames_to_write == {1, 3, 4}
    ann = os.path.join(root, 'Annotations', 'vid_b')
    assert seq.given_masks == {1: os.path.join(ann, '00005.png'), 3: os.path.join(ann, '00015.png')}
    assert seq.given_objects == {1: [1], 3: [2, 3]}
    assert seq.annotation_dir is None and seq.resize_height == 495 and seq.first_given == 1
    assert sequences[0].frames_to_write == {0, 1} and sequences[0].given_masks.keys() == {0}

    items = list(stream_frames(seq, workers=0))
    assert [item.name for item in items] == seq.frame_names
    assert items[0].given is None and items[2].given is None and items[4].given is None
    np.testing.assert_array_equal(items[1].given, np.where(masks[1] == 1, 1, 0))
    np.testing.assert_array_equal(items[3].given, np.where(np.isin(masks[3], [2, 3]), masks[3], 0))
    assert (items[1].given_labels, items[3].given_labels) == ((1,), (2, 3))
    assert items[3].frame.shape == (3, H, W)  # smaller than 495: not resized
    assert torch.equal(items[3].frame, _expected_frame(seq.frame_paths[3]))


def test_youtube_resize_tall_frames(tmp_path):
    root = str(tmp_path / 'yt')
    tall_h, tall_w = 500, 60
    frames = np.full((2, tall_h, tall_w, 3), (90, 140, 200), np.uint8)
    masks = np.zeros((2, tall_h, tall_w), np.uint8)
    masks[:, 100:300, 10:40] = 1
    write_youtube(root, 'tall', frames, masks)
    (seq,) = youtube_sequences(root)
    new_w = int(tall_w / tall_h * 495)
    for workers in (0, 2):
        items = list(stream_frames(seq, workers=workers))
        assert len(items) == 2
        for item, path in zip(items, seq.frame_paths):
            assert item.original_size == (tall_h, tall_w)
            assert item.frame.shape == (3, 495, new_w)
            with Image.open(path) as image:
                expected = to_tensor(image.convert('RGB').resize((new_w, 495), Image.BICUBIC))
            assert torch.equal(item.frame, expected)
        expected_mask = np.array(Image.fromarray(masks[0]).resize((new_w, 495), Image.NEAREST))
        assert items[0].given.shape == (495, new_w)
        np.testing.assert_array_equal(items[0].given, expected_mask)


def test_frame_folder_sequence(tmp_path):
    frames, masks = _video(seed=4, n=3)
    folder = tmp_path / 'myvideo'
    folder.mkdir()
    for t, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f'img_{t:03d}.png')
    mask_path = str(tmp_path / 'first.png')
    write_label_mask(mask_path, masks[0])
    seq = frame_folder_sequence(str(folder), mask_path)
    assert seq.name == 'myvideo' and seq.frame_names == ['img_000', 'img_001', 'img_002']
    items = list(stream_frames(seq, workers=0))
    assert torch.equal(items[2].frame, torch.from_numpy(frames[2]).permute(2, 0, 1).float() / 255)
    np.testing.assert_array_equal(items[0].given, masks[0])


# ------------------------------------------------------------------ bad inputs

def _raises(match_path, fn, *args, **kwargs):
    with pytest.raises(UserError) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert str(match_path) in message, message
    assert '\n' not in message and 'Traceback' not in message, message
    return message


def test_layout_errors(tmp_path):
    _raises(tmp_path / 'nowhere', davis_sequences, str(tmp_path / 'nowhere'))
    root = tmp_path / 'davis'
    frames, masks = _video(n=3)
    write_davis(str(root), 'seq', frames, masks)
    os.remove(root / 'ImageSets' / '2017' / 'val.txt')
    assert 'DAVIS' in _raises(root / 'ImageSets' / '2017' / 'val.txt', davis_sequences, str(root))
    (root / 'ImageSets' / '2017' / 'val.txt').write_text('seq\nghost\n')
    _raises(root / 'JPEGImages' / '480p' / 'ghost', davis_sequences, str(root))
    (root / 'JPEGImages' / '480p' / 'ghost').mkdir()
    _raises(root / 'Annotations' / '480p' / 'ghost', davis_sequences, str(root))
    (root / 'Annotations' / '480p' / 'ghost').mkdir()
    _raises(root / 'JPEGImages' / '480p' / 'ghost', davis_sequences, str(root))  # listed, no frames
    (root / 'ImageSets' / '2017' / 'val.txt').write_text('seq\n')
    os.remove(root / 'Annotations' / '480p' / 'seq' / '00000.png')
    _raises(root / 'Annotations' / '480p' / 'seq' / '00000.png', davis_sequences, str(root))
    write_label_mask(str(root / 'Annotations' / '480p' / 'seq' / '00000.png'), masks[0])
    write_label_mask(str(root / 'Annotations' / '480p' / 'seq' / '00077.png'), masks[0])
    _raises(root / 'Annotations' / '480p' / 'seq' / '00077.png', davis_sequences, str(root))

    long_root = tmp_path / 'long'
    write_long_video(str(long_root), 'v', frames, masks)
    os.remove(long_root / 'val.txt')
    _raises(long_root / 'val.txt', long_video_sequences, str(long_root))

    _raises(tmp_path / 'folder', frame_folder_sequence, str(tmp_path / 'folder'), str(tmp_path / 'm.png'))
    _raises(tmp_path / 'm.png', frame_folder_sequence, str(root / 'JPEGImages' / '480p' / 'seq'),
            str(tmp_path / 'm.png'))


def test_youtube_errors(tmp_path):
    root = tmp_path / 'yt'
    frames, masks = _video(n=3, objects=2)
    write_youtube(str(root), 'v', frames, masks, first_frames={1: 0, 2: 1})
    assert youtube_sequences(str(root))[0].given_masks.keys() == {0, 1}
    os.remove(root / 'Annotations' / 'v' / '00005.png')
    message = _raises(root / 'Annotations' / 'v' / '00005.png', youtube_sequences, str(root))
    assert 'object 2' in message
    write_label_mask(str(root / 'Annotations' / 'v' / '00005.png'), masks[1])
    meta = json.loads((root / 'meta.json').read_text())
    meta['videos']['v']['objects']['2']['frames'].append('00099')
    (root / 'meta.json').write_text(json.dumps(meta))
    assert '00099' in _raises(root / 'meta.json', youtube_sequences, str(root))
    os.remove(root / 'meta.json')
    _raises(root / 'meta.json', youtube_sequences, str(root))


def test_stream_errors(tmp_path):
    root = tmp_path / 'long'
    frames, masks = _video(n=4)
    write_long_video(str(root), 'v', frames, masks)
    (seq,) = long_video_sequences(str(root))
    bad = root / 'JPEGImages' / 'v' / '00002.jpg'
    bad.write_bytes(b'this is not a jpeg')
    for workers in (0, 2):
        _raises(bad, lambda: list(stream_frames(seq, workers=workers)))
    Image.fromarray(frames[2]).save(bad)
    # mask of another size than its frame: both files named
    write_label_mask(seq.given_masks[0], masks[0][:20])
    message = _raises(seq.given_masks[0], lambda: list(stream_frames(seq, workers=2)))
    assert seq.frame_paths[0] in message
    # a colour mask is refused by read_label_mask, and the message crosses the worker boundary
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(seq.given_masks[0])
    _raises(seq.given_masks[0], lambda: list(stream_frames(seq, workers=2)))
    # unreadable video file
    fake = tmp_path / 'fake.mp4'
    fake.write_bytes(b'\x00' * 100)
    _raises(fake, stream_video_file, str(fake), seq.given_masks[0])
    _raises(tmp_path / 'missing.mp4', probe_video, str(tmp_path / 'missing.mp4'))


# ------------------------------------------------------------------ outputs

def test_overlay_colours_and_contour():
    image = np.full((7, 8, 3), 100, np.uint8)
    image[..., 1] = 50
    labels = np.zeros((7, 8), np.uint8)
    labels[1:6, 1:5] = 1      # 5x4 block inside the image
    labels[0:3, 6:8] = 2      # touches the top and right borders
    out = overlay(image, labels)
    assert out.dtype == np.uint8 and out.shape == image.shape

    def blend(label, y, x):
        return np.rint(0.6 * image[y, x].astype(float) + 0.4 * np.array(PALETTE[label])).astype(np.uint8)

    # interior of object 1 blended; its outermost pixels black
    for y, x in [(2, 2), (3, 3), (4, 2)]:
        np.testing.assert_array_equal(out[y, x], blend(1, y, x))
    for y, x in [(1, 1), (1, 4), (5, 2), (3, 1), (3, 4)]:
        np.testing.assert_array_equal(out[y, x], 0)
    # object 2: no outline along the image border, outline where it meets the background
    np.testing.assert_array_equal(out[0, 7], blend(2, 0, 7))
    np.testing.assert_array_equal(out[2, 6], 0)
    np.testing.assert_array_equal(out[0, 6], 0)
    # background untouched
    np.testing.assert_array_equal(out[labels == 0], image[labels == 0])
    expected_edges = np.zeros_like(labels, bool)
    expected_edges[1:6, 1:5] = True
    expected_edges[2:5, 2:4] = False
    expected_edges[0:3, 6] = True
    expected_edges[2, 7] = True
    np.testing.assert_array_equal(object_boundary(labels), expected_edges)
    frame = to_tensor(Image.fromarray(image))
    np.testing.assert_array_equal(tensor_to_rgb(frame), image)


def _count_frames(path):
    capture = cv2.VideoCapture(str(path))
    count, size = 0, None
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        count += 1
        size = frame.shape[:2]
    capture.release()
    return count, size


def test_mp4_writer(tmp_path):
    frames, _ = _video(n=5)
    path = tmp_path / 'out' / 'video.mp4'
    with Mp4Writer(str(path), fps=10) as writer:
        for frame in frames:
            writer.write(frame)
    assert _count_frames(path) == (5, (H, W))
    assert probe_video(str(path)).fps == pytest.approx(10, abs=0.01)
    assert os.listdir(tmp_path / 'out') == ['video.mp4']

    broken = tmp_path / 'out' / 'broken.mp4'
    with pytest.raises(RuntimeError):
        with Mp4Writer(str(broken), fps=10) as writer:
            writer.write(frames[0])
            raise RuntimeError('interrupted')
    assert not broken.exists()
    assert os.listdir(tmp_path / 'out') == ['video.mp4']  # no temporary file left behind


@pytest.mark.parametrize('encoder, reason', [
    ('h264', 'File too large'),  # PyAV reports the failed write
    ('mp4v', 'the video came out incomplete, as when the disk is full'),  # OpenCV reports nothing: the file shows it
])
def test_an_mp4_cut_short_by_a_full_disk_is_deleted_with_one_line(tmp_path, encoder, reason):
    if encoder == 'h264':
        pytest.importorskip('av')
    path = tmp_path / 'out' / 'clip.mp4'
    code = ('import sys\nimport numpy as np\n'
            + ("sys.modules['av'] = None\n" if encoder == 'mp4v' else '')
            + 'from utils.video_writer import Mp4Writer\n'
            'with Mp4Writer(sys.argv[1], fps=10) as writer:\n'
            '    for frame in np.random.RandomState(0).randint(0, 256, (30, 48, 64, 3)).astype(np.uint8):\n'
            '        writer.write(frame)')
    result = run_code(code, path, file_size_limit=20_000)  # the video takes about 38 kB
    assert result.stderr.strip().splitlines()[-1] == (
        f'utils.files.WriteError: {path}: cannot write it ({reason}); free disk space or make its folder writable, '
        f'then run again')
    assert os.listdir(path.parent) == []
    assert run_code(code, path).returncode == 0
    assert _count_frames(path) == (30, (48, 64))


def test_async_writer(tmp_path):
    frames, masks = _video(n=6, objects=3)
    video = Mp4Writer(str(tmp_path / 'ov.mp4'), fps=5)
    with AsyncWriter(workers=2, max_pending=2) as writer:
        buffer = np.zeros((H, W), np.uint8)
        for t in range(6):
            buffer[:] = masks[t]  # reused buffer: the writer must have copied it
            writer.write_mask(str(tmp_path / 'masks' / f'{t:05d}.png'), buffer)
            writer.write_overlay(str(tmp_path / 'overlay' / f'{t:05d}.png'), frames[t], masks[t], video)
    video.close()  # after the writer has run every frame job
    for t in range(6):
        np.testing.assert_array_equal(read_label_mask(str(tmp_path / 'masks' / f'{t:05d}.png')), masks[t])
        with Image.open(tmp_path / 'overlay' / f'{t:05d}.png') as image:
            np.testing.assert_array_equal(np.array(image), overlay(frames[t], masks[t]))
    assert _count_frames(tmp_path / 'ov.mp4') == (6, (H, W))

    order = []
    with AsyncWriter(workers=2) as writer:
        for i in range(20):
            writer.submit_ordered(order.append, i)
    assert order == list(range(20))

    def fail():
        raise ValueError('job failed')

    writer = AsyncWriter(workers=2)
    writer.write_mask(str(tmp_path / 'ok.png'), masks[0])
    writer.submit(fail)
    with pytest.raises(ValueError, match='job failed'):
        writer.close()
    assert (tmp_path / 'ok.png').exists()
    with pytest.raises(ValueError, match='job failed'):
        with AsyncWriter(workers=1) as writer:
            writer.submit(fail)


def test_an_interrupt_while_closing_the_writer_waits_for_the_write_in_progress(tmp_path):
    mask = _video(n=1)[1][0]

    def write_when_interrupted():
        time.sleep(0.2)  # the main thread waits in close() by now
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
        time.sleep(0.3)
        write_label_mask(str(tmp_path / 'late.png'), mask)

    writer = AsyncWriter(workers=1)
    writer.submit(write_when_interrupted)
    with pytest.raises(KeyboardInterrupt):
        writer.close()
    assert os.listdir(tmp_path) == ['late.png']  # written whole, no temporary file cut off


def test_stream_video_file(tmp_path):
    frames, masks = _video(n=7)
    path = str(tmp_path / 'clip.mp4')
    with Mp4Writer(path, fps=12) as writer:
        for frame in frames:
            writer.write(frame)
    mask_path = str(tmp_path / 'first.png')
    write_label_mask(mask_path, masks[0])
    items = list(stream_video_file(path, mask_path, prefetch=2))
    assert [item.name for item in items] == [f'{t:05d}' for t in range(7)]
    assert [item.index for item in items] == list(range(7))
    assert all(item.frame.shape == (3, H, W) and item.frame.dtype == torch.float32 for item in items)
    assert all(item.original_size is None for item in items)
    np.testing.assert_array_equal(items[0].given, masks[0])
    assert items[0].given_labels == (1, 2) and all(item.given_labels == () for item in items[1:])
    assert all(item.given is None for item in items[1:])
    # lossy codec: close to the written frames, not equal
    assert (items[3].frame - torch.from_numpy(frames[3]).permute(2, 0, 1) / 255).abs().mean() < 0.05
    assert probe_video(path).fps == pytest.approx(12, abs=0.01)
    opened, real_capture = [], cv2.VideoCapture
    with mock.patch('cv2.VideoCapture', side_effect=lambda *args: opened.append(args) or real_capture(*args)):
        video = VideoFile(path, mask_path, 'clip')
        for _ in range(2):
            assert video.fps == pytest.approx(12, abs=0.01) and video.frame_count == 7
    assert len(opened) == 1  # probed once, however often fps and frame_count are read
    # stopping early ends the decoding thread
    stream = stream_video_file(path, mask_path, prefetch=1)
    assert next(stream).index == 0
    stream.close()
    # a mask of the wrong size names both files
    write_label_mask(mask_path, np.ones((10, W), np.uint8))
    message = _raises(mask_path, lambda: list(stream_video_file(path, mask_path)))
    assert path in message


def test_a_sequence_writes_from_its_first_given_frame_and_only_listed_frames():
    seq = Sequence(name='s', frame_paths=['a.jpg', 'b.jpg', 'c.jpg', 'd.jpg'], frame_names=['a', 'b', 'c', 'd'],
                   given_masks={1: 'b.png'}, frames_to_write={0, 1, 3})
    assert seq.first_given == 1 and seq.frame_count == 3
    assert [seq.writes(t) for t in range(4)] == [False, True, False, True]
    assert seq.output_names() == ['b', 'd']


def test_only_the_wanted_sequences_are_read(tmp_path):
    root = str(tmp_path / 'davis')
    frames, masks = _video(n=3)
    write_davis(root, 'good', frames, masks)
    write_davis(root, 'broken', frames, masks)
    os.remove(os.path.join(root, 'Annotations', '480p', 'broken', '00000.png'))
    assert [s.name for s in davis_sequences(root, wanted=['good'])] == ['good']
    _raises(os.path.join(root, 'Annotations', '480p', 'broken', '00000.png'), davis_sequences, root)
    message = _raises(os.path.join(root, 'ImageSets', '2017', 'val.txt'), davis_sequences, root, ['good', 'other'])
    assert message.startswith('other: not among the videos of')


def test_a_missing_first_mask_gives_one_message_whatever_reads_it(tmp_path):
    frames, masks = moving_shapes(0, 3, 32, 48, 1)
    write_davis(str(tmp_path / 'DAVIS'), 'seq', frames, masks)
    first = tmp_path / 'DAVIS' / 'Annotations' / '480p' / 'seq' / '00000.png'
    os.remove(first)
    video = str(tmp_path / 'clip.mp4')
    with Mp4Writer(video, fps=10) as writer:
        for frame in frames:
            writer.write(frame)
    folder = str(tmp_path / 'DAVIS' / 'JPEGImages' / '480p' / 'seq')
    missing = str(tmp_path / 'missing.png')
    readers = [(lambda: davis_sequences(str(tmp_path / 'DAVIS')), first, f"frame {folder}/00000.jpg of 'seq'"),
               (lambda: open_video(folder, missing), missing, f'frame {folder}/00000.jpg'),
               (lambda: open_video(video, missing), missing, video),
               (lambda: stream_video_file(video, missing), missing, video)]
    for read, mask, of in readers:
        with pytest.raises(UserError) as error:
            read()
        assert str(error.value) == f'{mask}: first-frame mask not found (it gives the objects of {of})'
