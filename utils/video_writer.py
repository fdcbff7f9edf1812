"""An MP4 writer (cv2.VideoWriter, 'mp4v') that only ever leaves complete files under the final name.

    with Mp4Writer('out/video.mp4', fps=25) as writer:
        for frame in frames:          # uint8 (H, W, 3) RGB, all the same size
            writer.write(frame)

Frames go to a temporary file beside the target; close() checks that the file is whole
and renames it onto the target. An exception inside the `with` block (or abort()) deletes
the temporary file, so an interrupted run or a full disk leaves no half-written MP4 under
the final name.
"""
import contextlib
import os
import struct

import numpy as np

from utils.errors import UserError
from utils.files import temporary_path_beside, write_error


def _is_complete_mp4(path):
    """Whether the file is a run of whole MP4 boxes that includes 'moov', the index the muxer writes last.

    OpenCV's writer reports no failed write (a full disk, a file size limit): only the file shows it.
    """
    size = os.path.getsize(path)
    kinds, offset = set(), 0
    with open(path, 'rb') as file:
        while offset < size:
            file.seek(offset)
            header = file.read(16)
            if len(header) < 8:
                return False
            box_size, kind = struct.unpack('>I4s', header[:8])
            if box_size == 1 and len(header) == 16:  # a 64-bit size follows the type
                box_size = struct.unpack('>Q', header[8:])[0]
            elif box_size == 0:  # the box runs to the end of the file
                box_size = size - offset
            if box_size < 8:
                return False
            kinds.add(kind)
            offset += box_size
    return offset == size and b'moov' in kinds


class Mp4Writer:
    def __init__(self, path, fps):
        """The first frame written sets the video's size."""
        self.path = os.fspath(path)
        self.fps = float(fps)
        self.frame_size = None
        self.frames_written = 0
        self._writer = None
        self._tmp = None
        self._closed = False

    def _open(self, frame_size):
        import cv2
        self._tmp = temporary_path_beside(self.path)
        height, width = frame_size
        writer = cv2.VideoWriter(self._tmp, cv2.VideoWriter_fourcc(*'mp4v'), self.fps, (width, height))
        if not writer.isOpened():
            self._remove_tmp()
            raise UserError(f'{self.path}: cannot open an MP4 writer (OpenCV lacks the mp4v codec, '
                            f'or the folder is not writable)')
        self._writer = writer
        self.frame_size = (height, width)

    def write(self, frame_rgb):
        """Append one uint8 (H, W, 3) RGB frame."""
        import cv2
        if self._closed:
            raise ValueError(f'{self.path}: writer already closed')
        frame = np.asarray(frame_rgb)
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f'{self.path}: frames must be (H, W, 3) RGB, got {frame.shape}')
        if self._writer is None:
            self._open(frame.shape[:2])
        if frame.shape[:2] != self.frame_size:
            raise ValueError(f'{self.path}: frame of size {frame.shape[:2]} differs from the video\'s {self.frame_size}')
        self._writer.write(cv2.cvtColor(np.ascontiguousarray(frame, dtype=np.uint8), cv2.COLOR_RGB2BGR))
        self.frames_written += 1

    def close(self):
        """Finish the file, check that it is whole, and rename it onto the target. With no frames written, no
        file is made; a file that came out incomplete is deleted (UserError)."""
        if self._closed:
            return
        self._closed = True
        if self._writer is None:
            return
        self._writer.release()
        self._writer = None
        if self.frames_written == 0:
            self._remove_tmp()
            return
        try:
            if not _is_complete_mp4(self._tmp):
                raise write_error(self.path, 'the video came out incomplete, as when the disk is full')
            os.replace(self._tmp, self.path)
        except BaseException as error:
            self._remove_tmp()
            if isinstance(error, OSError):
                raise write_error(self.path, error) from None
            raise
        self._tmp = None

    def abort(self):
        """Stop and delete the temporary file; the target is left as it was."""
        self._closed = True
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        self._remove_tmp()

    def _remove_tmp(self):
        if self._tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self._tmp)
            self._tmp = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False
