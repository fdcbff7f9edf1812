"""The app's work folder: the uploaded clip, its annotations and results, and the downloads, all on disk.

    root/clip-N/upload     the uploaded file, streamed to disk under a size limit (a zip's is removed once unpacked)
    root/clip-N/frames/    the open clip's previews or extracted frames (webapp.clip)
    root/clip-N/annotations/<frame>.png, results/<frame>.png   palette label PNGs, written atomically
    root/downloads/        the zip and the overlay MP4, made when asked for

Every path is built with utils.names.path_inside, so nothing is written outside the root; the root is removed
when the workspace closes (app.py closes it at every exit).
"""
import itertools
import os
import shutil
import tempfile
import zipfile

import numpy as np

from utils.errors import UserError
from utils.files import atomic_path
from utils.masks import object_labels_of, read_label_mask, required_object_labels, write_label_mask
from utils.names import path_inside
from utils.overlay import overlay
from utils.video_writer import Mp4Writer
from webapp.clip import open_clip

CHUNK = 1 << 20
# A zip of frames may unpack to this many times the upload limit (PNG and JPEG frames barely compress).
UNPACK_FACTOR = 4


class Workspace:
    def __init__(self, max_upload_bytes):
        self.root = tempfile.mkdtemp(prefix='afburr-app-')
        self.max_upload_bytes = max_upload_bytes
        self.clip = None
        self._folder = None
        self._numbers = itertools.count()

    def close(self):
        shutil.rmtree(self.root, ignore_errors=True)

    def _new_folder(self, *names):
        path = path_inside(self.root, *names)
        os.makedirs(path, exist_ok=True)
        return path

    # ------------------------------------------------------------ the clip
    def receive_upload(self, body, length, filename):
        """Stream `length` bytes of `body` (a file object) to disk and open them as the clip.

        A body over the limit is read to its end but not kept, so that the client gets the answer."""
        name = os.path.splitext(os.path.basename(filename or 'clip'))[0] or 'clip'
        if length > self.max_upload_bytes:
            discard(body, length)
            raise UserError(f'{name}: the file is {length / 2 ** 20:.1f} MB, over the limit of '
                            f'{self.max_upload_bytes / 2 ** 20:g} MB; send a shorter clip or start the app with '
                            f'a larger --max-upload-mb')

        def receive(folder):
            path = path_inside(folder, 'upload')
            with open(path, 'wb') as out:
                left = length
                while left > 0:
                    chunk = body.read(min(CHUNK, left))
                    if not chunk:
                        raise UserError(f'{name}: the upload stopped after {length - left} of {length} bytes; '
                                        f'send it again')
                    out.write(chunk)
                    left -= len(chunk)
            clip = self._open(path, folder, name, shown=os.path.basename(filename or name))
            if clip.video is None:
                os.remove(path)  # a zip's frames are extracted
            return clip
        return self._replace_clip(receive)

    def open_file(self, path, name):
        """Open a video file or a zip of frames on disk as the clip."""
        return self._replace_clip(lambda folder: self._open(path, folder, name))

    def _open(self, path, folder, name, shown=None):
        frames = self._new_folder(folder, 'frames')
        try:
            return open_clip(path, frames, name, UNPACK_FACTOR * self.max_upload_bytes)
        except UserError as error:  # name the file the user gave (`shown`) and a zip's entries, not copies here
            raise UserError(str(error).replace(path, shown or path).replace(frames + os.sep, '')) from None

    def _replace_clip(self, make):
        """The clip that make(new folder) returns replaces the open one; when it fails the open one stays."""
        folder = self._new_folder(f'clip-{next(self._numbers)}')
        try:
            clip = make(folder)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        previous, self.clip, self._folder = self._folder, clip, folder
        if previous is not None:
            shutil.rmtree(previous, ignore_errors=True)
        return clip

    def _require_clip(self):
        if self.clip is None:
            raise UserError('no clip is open; load a video or a zip of frames first')
        return self.clip

    def frame_index(self, text):
        """The frame number `text` of the open clip, checked."""
        clip = self._require_clip()
        try:
            t = int(text)
        except (TypeError, ValueError):
            raise UserError(f'frame {text!r} is not a number') from None
        if not 0 <= t < clip.frame_count:
            raise UserError(f'frame {t} is outside the clip (0..{clip.frame_count - 1})')
        return t

    # ------------------------------------------------------------ annotations and results
    def _label_path(self, kind, t):
        return path_inside(self._folder, kind, self._require_clip().frame_names[t] + '.png')

    def annotation_path(self, t):
        return self._label_path('annotations', t)

    def result_path(self, t):
        return self._label_path('results', t)

    @property
    def results_folder(self):
        return self._new_folder(self._folder, 'results')

    def _read(self, path):
        return read_label_mask(path) if os.path.isfile(path) else None

    def annotation(self, t):
        return self._read(self.annotation_path(t))

    def result(self, t):
        return self._read(self.result_path(t))

    def set_annotation(self, t, raw):
        """Frame t's annotation from raw uint8 labels, row by row; a mask without objects removes it."""
        height, width = self._require_clip().size
        if len(raw) != height * width:
            raise UserError(f'frame {t}: the mask has {len(raw)} labels, the frame {width}x{height} pixels')
        labels = np.frombuffer(raw, np.uint8).reshape(height, width)
        self._write_annotation(t, labels, object_labels_of(labels, f'the mask of frame {t}'))

    def import_annotation(self, t, png):
        """Frame t's annotation from the bytes of a label PNG (palette or grey levels); returns the labels."""
        upload = path_inside(self._folder, f'import-{next(self._numbers)}.png')
        with open(upload, 'wb') as out:
            out.write(png)
        try:
            labels = read_label_mask(upload)
        finally:
            os.remove(upload)
        height, width = self.clip.size
        if labels.shape != (height, width):
            raise UserError(f'the label PNG is {labels.shape[1]}x{labels.shape[0]} but the frames are '
                            f'{width}x{height}; it must have the frames\' size')
        self._write_annotation(t, labels, required_object_labels(labels, 'the label PNG'))
        return labels

    def _write_annotation(self, t, labels, objects):
        path = self.annotation_path(t)
        if objects:
            write_label_mask(path, labels)
        elif os.path.exists(path):
            os.remove(path)

    def annotated_frames(self):
        if self.clip is None:
            return []
        return [t for t in range(self.clip.frame_count) if os.path.isfile(self.annotation_path(t))]

    def given_masks(self, start):
        """{frame: labels} of the annotations at frames >= start (what a run from `start` is given)."""
        return {t: self.annotation(t) for t in self.annotated_frames() if t >= start}

    def clear_results(self, start):
        """Remove the results of frames >= start (a run from `start` makes them again)."""
        for t in range(start, self.clip.frame_count):
            path = self.result_path(t)
            if os.path.exists(path):
                os.remove(path)

    # ------------------------------------------------------------ downloads
    def write_masks_zip(self):
        """A zip of masks/<frame>.png (every result so far) and annotations/<frame>.png; returns its path."""
        clip = self._require_clip()
        path = path_inside(self._new_folder('downloads'), f'{clip.name}_masks.zip')
        with atomic_path(path) as tmp, zipfile.ZipFile(tmp, 'w', zipfile.ZIP_STORED) as archive:
            for t, name in enumerate(clip.frame_names):
                for folder, source in (('masks', self.result_path(t)), ('annotations', self.annotation_path(t))):
                    if os.path.isfile(source):
                        archive.write(source, f'{folder}/{name}.png')
        return path

    def write_overlay_video(self):
        """The results over the frames as an MP4 at the clip's frame rate; returns its path."""
        clip = self._require_clip()
        path = path_inside(self._new_folder('downloads'), f'{clip.name}_overlay.mp4')
        empty = np.zeros(clip.size, np.uint8)
        with Mp4Writer(path, clip.fps) as video:
            for t in range(clip.frame_count):
                labels = self.result(t)
                video.write(overlay(clip.frame_rgb(t), empty if labels is None else labels))
        return path


def discard(body, length):
    """Read `length` bytes of a request body and drop them."""
    while length > 0:
        chunk = body.read(min(CHUNK, length))
        if not chunk:
            return
        length -= len(chunk)
