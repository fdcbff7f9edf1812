"""The clip the user works on: a video file or a zip of frames, opened into a folder of the work folder.

A video file is decoded once when opened: that proves it (not a video, corrupt, zero frames), counts its
frames exactly and leaves a JPEG preview per frame for the page, so scrubbing never decodes the video again.
For propagation the frames are decoded again by the readers eval.py uses (dataset.frame_stream), so the
model sees the very frames `eval.py --video` gives it. A zip's entries are untrusted: image files in one
folder, plain names, bounded sizes; they are extracted and read as a frame folder.
"""
import os
import zipfile
from dataclasses import dataclass

import numpy as np
from PIL import Image

from dataset.eval_sets import FOLDER_FPS, Sequence, list_frames
from dataset.frame_stream import (decoding_shortfall, probe_video, read_video_frames, stream_frames,
                                  stream_video_frames)
from utils.errors import UserError
from utils.files import atomic_path
from utils.images import IMAGE_EXTENSIONS, opened_image, read_rgb
from utils.names import check_plain_name, path_inside

PREVIEW_QUALITY = 90
MAX_ZIP_FRAMES = 100_000
# Entries that archivers add beside the files (macOS resource forks, Finder and Windows metadata).
_METADATA_FOLDERS = ('__MACOSX',)
_METADATA_FILES = ('Thumbs.db', 'desktop.ini')


@dataclass
class Clip:
    """One clip: `frame_names[t]` names frame t's outputs (as eval.py names them); `video` is the video file,
    None for a frame folder (`frame_paths`)."""
    name: str
    frame_names: list
    fps: float
    size: tuple           # (H, W)
    preview_paths: list   # what the page shows: JPEG previews of a video, a folder's own frames
    video: str | None = None
    frame_paths: list | None = None
    note: str | None = None  # what the page says beside the clip, e.g. that a video decoded short

    @property
    def frame_count(self):
        return len(self.frame_names)

    def frame_rgb(self, t):
        """uint8 (H, W, 3) of frame t as the page shows it (a video frame's preview is a JPEG)."""
        return np.array(read_rgb(self.preview_paths[t]))

    def items(self, start, size, workers=2):
        """FrameItems (no given masks) from frame `start` on at the working size `size` (None: the native size),
        decoded and resized as eval.py does it."""
        if self.video is not None:
            return stream_video_frames(self.video, start=start, size=size)
        sequence = Sequence(name=self.name, frame_paths=self.frame_paths, frame_names=self.frame_names,
                            given_masks={}, working_size=size)
        return stream_frames(sequence, workers=workers, start=start)


def open_clip(path, folder, name, max_extract_bytes):
    """The Clip of an uploaded file `path` (a zip of frames or a video file), made in the new `folder`."""
    if zipfile.is_zipfile(path):
        return _open_zip(path, folder, name, max_extract_bytes)
    return _open_video(path, folder, name)


def _open_video(path, folder, name):
    previews = []
    size = None
    for index, rgb in read_video_frames(path):
        if size is None:
            size = rgb.shape[:2]
        elif rgb.shape[:2] != size:
            raise UserError(f'{name}: frame {index} is {rgb.shape[1]}x{rgb.shape[0]}, the first '
                            f'{size[1]}x{size[0]}; a clip keeps one frame size')
        preview = path_inside(folder, f'{index:05d}.jpg')
        Image.fromarray(rgb).save(preview, quality=PREVIEW_QUALITY)
        previews.append(preview)
    probe = probe_video(path)
    return Clip(name=name, frame_names=[f'{t:05d}' for t in range(len(previews))], fps=probe.fps,
                size=tuple(size), preview_paths=previews, video=path,
                note=decoding_shortfall(len(previews), probe.frame_count))


def _frame_entries(archive, source):
    """The zip's image entries, checked: plain names in one folder, no duplicates, bounded count."""
    entries, folders = [], set()
    for entry in archive.infolist():
        parts = entry.filename.rstrip('/').split('/')
        if entry.is_dir() or parts[0] in _METADATA_FOLDERS or parts[-1].startswith('.') \
                or parts[-1] in _METADATA_FILES:
            continue
        for part in parts:
            check_plain_name(part, f'{source}: entry {entry.filename!r}')
        if os.path.splitext(parts[-1])[1].lower() not in IMAGE_EXTENSIONS:
            raise UserError(f'{source}: entry {entry.filename!r} is not a frame image; a zip of frames holds '
                            f'only .jpg or .png images')
        entries.append(entry)
        folders.add(tuple(parts[:-1]))
    if not entries:
        raise UserError(f'{source}: the zip holds no .jpg or .png frames')
    if len(folders) > 1:
        raise UserError(f'{source}: the zip holds frames in {len(folders)} folders; put every frame of the clip '
                        f'in one folder')
    if len(entries) > MAX_ZIP_FRAMES:
        raise UserError(f'{source}: {len(entries)} frames, more than {MAX_ZIP_FRAMES}')
    names = [entry.filename.rsplit('/', 1)[-1] for entry in entries]
    if len(set(names)) != len(names):
        raise UserError(f'{source}: the zip names a frame twice')
    return entries


def _extract(archive, entries, folder, source, max_bytes):
    """Extract the entries' files into `folder`, stopping as soon as more than `max_bytes` come out."""
    written = 0
    for entry in entries:
        target = path_inside(folder, entry.filename.rsplit('/', 1)[-1])
        with archive.open(entry) as data, atomic_path(target) as tmp, open(tmp, 'wb') as out:
            while chunk := data.read(1 << 20):
                written += len(chunk)
                if written > max_bytes:
                    raise _too_large(source, max_bytes)
                out.write(chunk)


def _too_large(source, max_bytes):
    return UserError(f'{source}: the frames take more than {max_bytes // 2 ** 20} MB once unpacked; send a '
                     f'shorter clip or start the app with a larger --max-upload-mb')


def _frame_size(path):
    with opened_image(path, 'frame image') as image:
        return image.height, image.width


def _open_zip(path, folder, name, max_extract_bytes):
    try:
        with zipfile.ZipFile(path) as archive:
            entries = _frame_entries(archive, name)
            if sum(entry.file_size for entry in entries) > max_extract_bytes:
                raise _too_large(name, max_extract_bytes)
            _extract(archive, entries, folder, name, max_extract_bytes)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as error:
        raise UserError(f'{name}: cannot read the zip ({error})') from None
    paths, stems = list_frames(folder, 'zip')
    size = _frame_size(paths[0])
    for frame in paths[1:]:
        if _frame_size(frame) != size:
            raise UserError(f'{name}: {os.path.basename(frame)} is not {size[1]}x{size[0]} as the first frame; '
                            f'a clip keeps one frame size')
    return Clip(name=name, frame_names=stems, fps=FOLDER_FPS, size=size, preview_paths=paths, frame_paths=paths)
