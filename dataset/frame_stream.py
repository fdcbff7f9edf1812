"""Frames decoded ahead of the model, one at a time, never the whole video in memory.

    for item in stream_frames(sequence, workers=2, prefetch=4):
        item.frame     # float32 (3, h, w) in [0, 1], resized to height 495 for YouTube-VOS
        item.given     # uint8 (h, w) label mask of the objects given at this frame, or None

`stream_frames` reads a `Sequence` (dataset/eval_sets.py) with a torch DataLoader
whose worker processes decode frames ahead of the consumer; `stream_video_file`
reads a video file with cv2 in a background thread. Both yield `FrameItem`s
(model.inference.propagation).
A bad file raises a one-line `UserError` naming it in the calling process.
"""
import os
import queue
import threading
from dataclasses import dataclass

import numpy as np
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from model.inference.propagation import FrameItem
from utils.errors import UserError
from utils.images import rgb_to_tensor
from utils.masks import object_labels_of, read_label_mask, required_object_labels


@dataclass
class _Failure:
    """A worker's UserError, sent back as data so the message reaches the caller unwrapped."""
    message: str


def resized_size(height, width, resize_height):
    """(h, w) after the YouTube-VOS rule: frames at least `resize_height` tall go to that height, aspect kept."""
    if resize_height is None or height < resize_height:
        return height, width
    return resize_height, int(width / height * resize_height)


def _read_frame(path):
    try:
        with Image.open(path) as image:
            return image.convert('RGB')
    except FileNotFoundError:
        raise UserError(f'{path}: frame image not found') from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise UserError(f'{path}: cannot read frame image ({error})') from None


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
    image = _read_frame(path)
    width, height = image.size
    given, given_labels = None, ()
    if index in sequence.given_masks:
        given, given_labels = read_given_mask(sequence.given_masks[index], path, (height, width),
                                              (sequence.given_objects or {}).get(index))
    new_h, new_w = resized_size(height, width, sequence.resize_height)
    if (new_h, new_w) != (height, width):
        image = image.resize((new_w, new_h), Image.BICUBIC)
        if given is not None:
            given = np.array(Image.fromarray(given).resize((new_w, new_h), Image.NEAREST), np.uint8)
    return FrameItem(index=index, name=sequence.frame_names[index], frame=rgb_to_tensor(np.array(image)),
                     given=given, given_labels=given_labels, original_size=(height, width))


class _FrameDataset(Dataset):
    def __init__(self, sequence, indices):
        self.sequence = sequence
        self.indices = list(indices)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        try:
            return load_frame_item(self.sequence, self.indices[i])
        except UserError as error:
            return _Failure(str(error))


def _keep(item):
    return item


def stream_frames(sequence, workers=2, prefetch=4, start=0, stop=None):
    """Yield a FrameItem for frames start..stop-1 of `sequence`, in order.

    Worker processes (a DataLoader, batch_size None) decode up to workers * prefetch
    frames ahead; workers=0 decodes in this process. Raises UserError naming the file
    for an unreadable frame or mask or a mask whose size differs from its frame.
    """
    stop = len(sequence.frame_paths) if stop is None else stop
    dataset = _FrameDataset(sequence, range(start, stop))
    if len(dataset) == 0:
        return
    options = dict(batch_size=None, collate_fn=_keep, num_workers=workers, persistent_workers=False)
    if workers > 0:
        options['prefetch_factor'] = max(1, prefetch)
    loader = DataLoader(dataset, **options)
    iterator = iter(loader)
    try:
        for item in iterator:
            if isinstance(item, _Failure):
                raise UserError(item.message)
            yield item
    finally:
        shutdown = getattr(iterator, '_shutdown_workers', None)
        if shutdown is not None:
            shutdown()
        del iterator


# ---------------------------------------------------------------- video files

def _open_video(path):
    import cv2
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UserError(f'{path}: video file not found')
    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        capture.release()
        raise UserError(f'{path}: cannot open it as a video (unknown format or codec)')
    return capture


@dataclass(frozen=True)
class VideoProbe:
    """What a video file's container states: its frame rate and frame count."""
    fps: float                 # the stated rate, or the default when it gives none
    frame_count: int | None    # may be approximate (for progress bars); None when unknown


def probe_video(path, default_fps=25.0):
    """Open the video once and read the VideoProbe its container states (a UserError if it cannot be opened)."""
    import cv2
    capture = _open_video(path)
    try:
        fps, count = capture.get(cv2.CAP_PROP_FPS), capture.get(cv2.CAP_PROP_FRAME_COUNT)
    finally:
        capture.release()
    return VideoProbe(float(fps) if fps and fps > 0 and np.isfinite(fps) else float(default_fps),
                      int(count) if count and count > 0 else None)


_END = object()


@dataclass
class VideoFile:
    """A video file to segment as one video (the --video reader); frame 0's objects are given by `mask_path`."""
    path: str
    mask_path: str
    name: str
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
        return stream_video_file(self.path, self.mask_path)

    def writes(self, index):
        return True

    def output_names(self):
        """Unknown before decoding, so a video file is never counted as done."""
        return None


def stream_video_file(path, given_mask_path, prefetch=8):
    """Yield FrameItems of a video file decoded with cv2 in a background thread.

    Frame names are `%05d` of the frame number (from 0); frame 0's given mask is the
    label PNG `given_mask_path`. Up to `prefetch` frames are decoded ahead.
    """
    path = os.fspath(path)
    given_mask_path = os.fspath(given_mask_path)
    _open_video(path).release()  # checked now, not at the first next()
    check_first_mask(given_mask_path, path)
    return _video_items(path, given_mask_path, prefetch)


def _video_items(path, given_mask_path, prefetch):
    import cv2
    capture = _open_video(path)
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
        try:
            index = 0
            while not stopping.is_set():
                ok, bgr = capture.read()
                if not ok:
                    if index == 0:
                        raise UserError(f'{path}: no frame could be decoded (empty or corrupt video)')
                    break
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                given, given_labels = None, ()
                if index == 0:
                    given, given_labels = read_given_mask(given_mask_path, path, rgb.shape[:2])
                item = FrameItem(index=index, name=f'{index:05d}', frame=rgb_to_tensor(rgb), given=given,
                                 given_labels=given_labels)
                if not put(item):
                    return
                index += 1
            put(_END)
        except BaseException as error:  # handed to the consumer, raised there
            put(error)
        finally:
            capture.release()

    thread = threading.Thread(target=decode, name=f'decode {os.path.basename(path)}', daemon=True)
    thread.start()
    try:
        while True:
            item = frames.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stopping.set()
        thread.join(timeout=5)
