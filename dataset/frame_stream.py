"""Frames decoded ahead of the model, one at a time, never the whole video in memory.

    for item in stream_frames(sequence, workers=2, prefetch=4):
        item.frame     # float32 (3, h, w) in [0, 1], resized to height 495 for YouTube-VOS, to the working size
                       # (utils.images.working_size) for your own videos
        item.given     # uint8 (h, w) label mask of the objects given at this frame, or None

`stream_frames` reads a `Sequence` (dataset/eval_sets.py) with a torch DataLoader
whose worker processes decode frames ahead of the consumer; `stream_video_file`
reads a video file with cv2 in a background thread. Both yield `FrameItem`s
(model.inference.propagation).
A bad file, or a frame whose size differs from the first frame's, raises a one-line `UserError` naming it in
the calling process.
"""
import contextlib
import functools
import os
import queue
import re
import sys
import tempfile
import threading
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from model.inference.propagation import FrameItem
from utils.cli import print_line
from utils.errors import UserError
from utils.images import (at_working_size, check_pixel_count, opened_image, read_rgb, resize_labels, rgb_to_tensor,
                          working_size)
from utils.loader_errors import UserErrorsAsData, raise_load_failures
from utils.masks import object_labels_of, read_label_mask, required_object_labels


def resized_size(height, width, resize_height):
    """(h, w) after the YouTube-VOS rule: frames at least `resize_height` tall go to that height, aspect kept."""
    if resize_height is None or height < resize_height:
        return height, width
    return resize_height, int(width / height * resize_height)


def handed_over_size(sequence, height, width):
    """(h, w) of the frames load_frame_item makes of a (height, width) frame of `sequence`: resized as YouTube-VOS
    frames are, then to the working size."""
    return working_size(*resized_size(height, width, sequence.resize_height), sequence.working_size)


def check_first_mask(mask_path, frame):
    """A first-frame mask must exist and give at least one object; `frame` names what it gives the objects of."""
    if not os.path.isfile(mask_path):
        raise UserError(f'{mask_path}: first-frame mask not found (it gives the objects of {frame})')
    required_object_labels(read_label_mask(mask_path), f'{mask_path}: the first-frame mask')


def read_given_mask(mask_path, frame_path, frame_size, objects=None):
    """(label mask, its object labels) given for a frame of (H, W) `frame_size`.

    `objects`: the ids given there (the mask's other labels are cleared); None: every label in it.
    """
    labels = read_label_mask(mask_path)
    if labels.shape != frame_size:
        raise UserError(f'{mask_path}: mask is {labels.shape[1]}x{labels.shape[0]} (WxH) but its frame '
                        f'{frame_path} is {frame_size[1]}x{frame_size[0]}; they must have the same size')
    if objects is None:
        return labels, tuple(object_labels_of(labels, mask_path))
    return np.where(np.isin(labels, objects), labels, 0).astype(np.uint8), tuple(objects)


def load_frame_item(sequence, index):
    """Decode frame `index` of `sequence` (and its given mask) into a FrameItem; UserError for bad files."""
    path = sequence.frame_paths[index]
    image = read_rgb(path)
    width, height = image.size
    given = None
    if index in sequence.given_masks:
        given, given_labels = read_given_mask(sequence.given_masks[index], path, (height, width),
                                              (sequence.given_objects or {}).get(index))
    new_h, new_w = resized_size(height, width, sequence.resize_height)
    if (new_h, new_w) != (height, width):
        image = image.resize((new_w, new_h), Image.BICUBIC)
        if given is not None:
            given = resize_labels(given, (new_h, new_w))
    frame, _ = at_working_size(rgb_to_tensor(np.array(image)), sequence.working_size)
    item = FrameItem(index=index, name=sequence.frame_names[index], frame=frame, original_size=(height, width))
    if given is not None:
        item.give(given, given_labels)
    return item


class _FrameDataset(Dataset):
    def __init__(self, sequence, indices):
        self.sequence = sequence
        self.indices = list(indices)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        return load_frame_item(self.sequence, self.indices[i])


def _keep(item):
    return item


class _OneFrameSize:
    """Refuses the first frame whose size (before any resize) differs from the video's first frame's: the bank
    holds features of one size, and masks and overlays of mixed sizes would be written. `where(index)` names a
    frame."""

    def __init__(self, where):
        self.where = where
        self.first = None

    def check(self, item):
        size = item.original_size or tuple(item.frame.shape[-2:])
        if self.first is None:
            self.first = item.index, size
        elif size != self.first[1]:
            (first_index, (height, width)) = self.first
            raise UserError(f'{self.where(item.index)}: frame is {size[1]}x{size[0]} but {self.where(first_index)} '
                            f'is {width}x{height}; every frame of a video must have one size (resize the frames, '
                            f'or split the video where the size changes)')
        return item


# A worker whose frame is lost (shared memory filled up by another process after the check below) would
# keep the run waiting for ever; decoding a frame takes well under a second.
WORKER_TIMEOUT_S = 120
# Bytes a frame in flight holds in shared memory: float32 RGB, and a uint8 mask for a given frame.
_SHARED_BYTES_PER_PIXEL = 3 * 4 + 1
_SHM_ADVICE = ('in Docker give the container more with --shm-size=1g (its default is 64 MB), '
               'or pass --workers 0 to decode in the main process from the start')


@functools.cache
def _warn(message):
    """Print a warning line once per process (a dataset's videos all meet the same shared memory)."""
    print_line(f'warning: {message}')


def _shared_memory_problem(sequence, start, workers, prefetch):
    """Why the frames decoded ahead cannot all sit in shared memory (/dev/shm) at once, or None: worker
    processes hand frames over there, and a worker that cannot allocate its frame loses it."""
    with opened_image(sequence.frame_paths[start], 'frame image') as image:
        width, height = image.size
    height, width = handed_over_size(sequence, height, width)
    nbytes = (workers * prefetch + 2) * height * width * _SHARED_BYTES_PER_PIXEL
    try:
        torch.UntypedStorage._new_shared(nbytes)  # as workers allocate; share_memory_() would also copy (7x slower)
    except RuntimeError:
        return f'{nbytes / 2 ** 20:.0f} MB of shared memory (/dev/shm) could not be allocated'
    return None


def _loader_items(dataset, workers, prefetch):
    options = dict(batch_size=None, collate_fn=_keep, num_workers=workers, persistent_workers=False)
    if workers > 0:
        options.update(prefetch_factor=max(1, prefetch), timeout=WORKER_TIMEOUT_S)
    iterator = iter(DataLoader(UserErrorsAsData(dataset), **options))
    try:
        yield from raise_load_failures(iterator)
    finally:
        shutdown = getattr(iterator, '_shutdown_workers', None)
        if shutdown is not None:
            shutdown()
        del iterator


def stream_frames(sequence, workers=2, prefetch=4, start=0, stop=None):
    """Yield a FrameItem for frames start..stop-1 of `sequence`, in order.

    Worker processes (a DataLoader, batch_size None) decode up to workers * prefetch
    frames ahead; workers=0 decodes in this process, and so do the workers' failures:
    too little shared memory for the frames ahead (checked first), a worker killed or
    silent for WORKER_TIMEOUT_S, each with one warning line. Raises UserError naming
    the file for an unreadable frame or mask or a mask whose size differs from its frame.
    """
    stop = len(sequence.frame_paths) if stop is None else stop
    if start >= stop:
        return
    if workers > 0:
        problem = _shared_memory_problem(sequence, start, workers, prefetch)
        if problem is not None:
            _warn(f'{problem} for the frames that {workers} decoding workers read ahead; decoding in the main '
                  f'process instead (slower): {_SHM_ADVICE}')
            workers = 0
    one_size = _OneFrameSize(lambda index: sequence.frame_paths[index])
    next_index = start
    while next_index < stop:
        try:
            for item in _loader_items(_FrameDataset(sequence, range(next_index, stop)), workers, prefetch):
                yield one_size.check(item)
                next_index = item.index + 1
        except RuntimeError as error:  # the loader's own machinery: our errors come back as LoadFailure items
            if workers == 0:
                raise
            _warn(f'frame-decoding workers failed ({error}); decoding in the main process from here on (slower): '
                  f'{_SHM_ADVICE}')
            workers = 0


# ---------------------------------------------------------------- video files

_FFMPEG_PREFIX = re.compile(r'^\[[^\]]* @ 0x[0-9a-f]+\] ')


@contextlib.contextmanager
def _library_messages():
    """Yield a list that gets, after the block, the lines C libraries (cv2's ffmpeg) wrote to stderr within it,
    instead of the terminal: a file that cannot be opened is reported in our one line, with ffmpeg's reason."""
    sys.stderr.flush()
    saved = os.dup(2)
    lines = []
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            lines.extend(_FFMPEG_PREFIX.sub('', line).strip()
                         for line in capture.read().decode(errors='replace').splitlines() if line.strip())


def _open_video(path):
    import cv2
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UserError(f'{path}: video file not found')
    with _library_messages() as messages:
        capture = cv2.VideoCapture(path)
        opened = capture.isOpened()
    if not opened:
        capture.release()
        reason = messages[-1] if messages else 'unknown format or codec'
        raise UserError(f'{path}: cannot open it as a video ({reason})')
    return capture


@dataclass(frozen=True)
class VideoProbe:
    """What a video file's container states: its frame rate and frame count."""
    fps: float                 # the stated rate, or the default when it gives none
    frame_count: int | None    # may be approximate (for progress bars); None when unknown


def _stated_frame_count(capture):
    import cv2
    count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
    return int(count) if count and count > 0 and np.isfinite(count) else None


def probe_video(path, default_fps=25.0):
    """Open the video once and read the VideoProbe its container states (a UserError if it cannot be opened, or
    if its frames are larger than images are read: utils.images.MAX_IMAGE_PIXELS)."""
    import cv2
    capture = _open_video(path)
    try:
        fps, count = capture.get(cv2.CAP_PROP_FPS), _stated_frame_count(capture)
        width, height = capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT)
    finally:
        capture.release()
    if np.isfinite(width) and np.isfinite(height):
        check_pixel_count(path, 'video frame', int(width), int(height))
    return VideoProbe(float(fps) if fps and fps > 0 and np.isfinite(fps) else float(default_fps), count)


_END = object()


@dataclass
class VideoFile:
    """A video file to segment as one video (the --video reader); frame 0's objects are given by `mask_path`.

    Frames are resized to the working size `size` (utils.images.working_size; None: the native size).
    """
    path: str
    mask_path: str
    name: str
    size: int | None = None
    object_labels = ()

    def __post_init__(self):
        self._probe = probe_video(self.path)  # once: the file is checked here, before the model loads

    @property
    def fps(self):
        return self._probe.fps

    @property
    def frame_count(self):
        """The count the container states (for progress bars), None when unknown."""
        return self._probe.frame_count

    def frames(self, workers=None):
        """FrameItems decoded by a background thread (`workers` is for folders' decoding processes)."""
        return stream_video_file(self.path, self.mask_path, size=self.size)

    def writes(self, index):
        return True

    def output_names(self):
        """Unknown before decoding, so a video file is never counted as done."""
        return None


def decoding_shortfall(decoded, stated):
    """Why `decoded` frames are fewer than the `stated` count of the container (None when they are not): a
    truncated or damaged file ends decoding early, which cv2 cannot tell from the end of the video."""
    if stated is None or decoded >= stated:
        return None
    return (f'only {decoded} of the {stated} frames its container states could be decoded: the file may be '
            f'truncated or corrupt')


def read_video_frames(path, start=0):
    """Yield (index, RGB uint8 (H, W, 3)) for the frames of a video file from frame `start` on, decoded with cv2.

    The frames before `start` are decoded but not converted. UserError when no frame decodes at all; one
    warning line when decoding ends before the count the container states (results stop there).
    """
    import cv2
    capture = _open_video(path)
    try:
        index = 0
        while True:
            if index < start:
                ok = capture.grab()
            else:
                ok, bgr = capture.read()
            if not ok:
                if index == 0:
                    raise UserError(f'{path}: no frame could be decoded (empty or corrupt video)')
                shortfall = decoding_shortfall(index, _stated_frame_count(capture))
                if shortfall:
                    _warn(f'{path}: {shortfall}; results stop at frame {index - 1}')
                return
            if index >= start:
                yield index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            index += 1
    finally:
        capture.release()


def stream_video_file(path, given_mask_path, prefetch=8, size=None):
    """Yield FrameItems of a video file decoded with cv2 in a background thread.

    Frame names are `%05d` of the frame number (from 0); frame 0's given mask is the
    label PNG `given_mask_path`. Up to `prefetch` frames are decoded ahead, resized there to
    the working size `size` (None: the native size).
    """
    path = os.fspath(path)
    given_mask_path = os.fspath(given_mask_path)
    _open_video(path).release()  # checked now, not at the first next()
    check_first_mask(given_mask_path, path)
    return _with_first_mask(stream_video_frames(path, prefetch, size=size), path, given_mask_path)


def _with_first_mask(items, path, given_mask_path):
    """The items with frame 0's given mask, read at the frame's own size and brought to its working size."""
    with contextlib.closing(items):
        for item in items:
            if item.index == 0:
                item.give(*read_given_mask(given_mask_path, path, item.original_size or tuple(item.frame.shape[-2:])))
            yield item


def stream_video_frames(path, prefetch=8, start=0, size=None):
    """Yield FrameItems (no given masks) of a video file from frame `start` on, decoded by a background thread
    up to `prefetch` frames ahead and resized there to the working size `size` (None: the native size); names
    are `%05d` of the frame number."""
    path = os.fspath(path)
    frames = queue.Queue(maxsize=max(1, prefetch))
    stopping = threading.Event()

    def put(value):
        while not stopping.is_set():
            try:
                frames.put(value, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def decode():
        decoded = read_video_frames(path, start)
        try:
            for index, rgb in decoded:
                frame, original_size = at_working_size(rgb_to_tensor(rgb), size)
                if not put(FrameItem(index=index, name=f'{index:05d}', frame=frame, original_size=original_size)):
                    return
            put(_END)
        except BaseException as error:  # handed to the consumer, raised there
            put(error)
        finally:
            decoded.close()

    thread = threading.Thread(target=decode, name=f'decode {os.path.basename(path)}', daemon=True)
    thread.start()
    one_size = _OneFrameSize(lambda index: f'{path}, frame {index}')
    try:
        while True:
            item = frames.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield one_size.check(item)
    finally:
        stopping.set()
        thread.join(timeout=5)
