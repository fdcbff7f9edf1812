"""The clip the user works on: a video file or a zip of frames, opened once into its folder of the workspace.

    clip.json       what the clip is: its name, frame names and files, frame rate and size (Clip, written once)
    video           the uploaded video file, kept: propagation decodes it again
    frames/         a video's JPEG previews, or a zip's extracted frames

A video file is decoded once when opened: that proves it (not a video, corrupt, zero frames, too large), counts
its frames exactly and leaves a JPEG preview per frame for the page, so scrubbing never decodes the video again.
For propagation the frames are decoded again by the readers eval.py uses (dataset.frame_stream), so the
model sees the very frames `eval.py --video` gives it. A zip's entries are untrusted: image files in one
folder, plain names, bounded sizes; they are extracted and read as a frame folder.
"""
import json
import os
import time
import zipfile
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from dataset.eval_sets import FOLDER_FPS, Sequence, list_frames
from dataset.frame_stream import (decoding_shortfall, probe_video, read_video_frames, stream_frames,
                                  stream_video_frames)
from utils.errors import UserError
from utils.files import WriteError, atomic_path, write_error
from utils.images import IMAGE_EXTENSIONS, opened_image, read_rgb
from utils.names import check_plain_name, path_inside

PREVIEW_QUALITY = 90
MAX_ZIP_FRAMES = 100_000
CLIP_FILE = 'clip.json'
VIDEO_FILE = 'video'
FRAMES_FOLDER = 'frames'
# Entries that archivers add beside the files (macOS resource forks, Finder and Windows metadata).
_METADATA_FOLDERS = ('__MACOSX',)
_METADATA_FILES = ('Thumbs.db', 'desktop.ini')


@dataclass
class Clip:
    """One clip in its `folder`: `frame_names[t]` names frame t's outputs (as eval.py names them),
    `frame_files[t]` its image in frames/ (a video's JPEG preview, a zip's own frame)."""
    folder: str
    name: str
    frame_names: list
    frame_files: list
    fps: float
    size: tuple              # (H, W)
    video: bool              # a video file (kept as `video`), else a zip's frames
    source: str              # the file the user gave, as the page names it
    note: str | None = None  # what the page says beside the clip, e.g. that a video decoded short
    origin: dict | None = None   # path, size and mtime of the file app.py --video opened (to reopen it)
    created: float = 0.0

    @property
    def frame_count(self):
        return len(self.frame_names)

    def preview_path(self, t):
        return path_inside(self.folder, FRAMES_FOLDER, self.frame_files[t])

    def frame_rgb(self, t):
        """uint8 (H, W, 3) of frame t as the page shows it (a video frame's preview is a JPEG)."""
        return np.array(read_rgb(self.preview_path(t)))

    def items(self, start, size, workers=2):
        """FrameItems (no given masks) from frame `start` on at the working size `size` (None: the native size),
        decoded and resized as eval.py does it."""
        if self.video:
            return stream_video_frames(path_inside(self.folder, VIDEO_FILE), start=start, size=size)
        sequence = Sequence(name=self.name, frame_paths=[self.preview_path(t) for t in range(self.frame_count)],
                            frame_names=self.frame_names, given_masks={}, working_size=size)
        return stream_frames(sequence, workers=workers, start=start)

    def save(self):
        record = asdict(self)
        del record['folder']
        with atomic_path(path_inside(self.folder, CLIP_FILE)) as tmp, open(tmp, 'w') as out:
            json.dump(record, out)

    @classmethod
    def load(cls, folder):
        with open(path_inside(folder, CLIP_FILE)) as f:
            record = json.load(f)
        record['size'] = tuple(record['size'])
        return cls(folder=folder, **record)


def open_clip(upload, folder, name, source, max_extract_bytes):
    """The Clip of the file `upload` (a zip of frames or a video file) in `folder`, which holds it: a video is
    kept there as `video`, a zip is removed once extracted. Errors name the file as `source` (the user's)."""
    frames = path_inside(folder, FRAMES_FOLDER)
    os.makedirs(frames, exist_ok=True)
    try:
        if zipfile.is_zipfile(upload):
            clip = _open_zip(upload, folder, frames, name, source, max_extract_bytes)
            os.remove(upload)
        else:
            clip = _open_video(upload, folder, frames, name, source)
            os.replace(upload, path_inside(folder, VIDEO_FILE))
    except WriteError:
        raise
    except UserError as error:  # name the file the user gave and a zip's entries, not the copies here
        message = str(error).replace(upload, source).replace(frames + os.sep, '')
        raise UserError(message if message.startswith(source) else f'{source}: {message}') from None
    clip.created = time.time()
    clip.save()
    return clip


def _open_video(path, folder, frames, name, source):
    probe = probe_video(path)
    files = []
    size = None
    for index, rgb in read_video_frames(path):
        if size is None:
            size = rgb.shape[:2]
        elif rgb.shape[:2] != size:
            raise UserError(f'{source}: frame {index} is {rgb.shape[1]}x{rgb.shape[0]}, the first '
                            f'{size[1]}x{size[0]}; a clip keeps one frame size')
        files.append(f'{index:05d}.jpg')
        preview = path_inside(frames, files[-1])
        try:
            Image.fromarray(rgb).save(preview, quality=PREVIEW_QUALITY)
        except OSError as error:
            raise write_error(preview, error) from None
    return Clip(folder=folder, name=name, frame_names=[f'{t:05d}' for t in range(len(files))], frame_files=files,
                fps=probe.fps, size=tuple(size), video=True, source=source,
                note=decoding_shortfall(len(files), probe.frame_count))


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


def _open_zip(path, folder, frames, name, source, max_extract_bytes):
    try:
        with zipfile.ZipFile(path) as archive:
            entries = _frame_entries(archive, source)
            if sum(entry.file_size for entry in entries) > max_extract_bytes:
                raise _too_large(source, max_extract_bytes)
            _extract(archive, entries, frames, source, max_extract_bytes)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as error:
        raise UserError(f'{source}: cannot read the zip ({error})') from None
    paths, stems = list_frames(frames, 'zip')
    size = _frame_size(paths[0])
    for frame in paths[1:]:
        if _frame_size(frame) != size:
            raise UserError(f'{source}: {os.path.basename(frame)} is not {size[1]}x{size[0]} as the first frame; '
                            f'a clip keeps one frame size')
    return Clip(folder=folder, name=name, frame_names=stems, frame_files=[os.path.basename(p) for p in paths],
                fps=FOLDER_FPS, size=size, video=False, source=source)
