"""An MP4 writer that only ever leaves complete files under the final name: H.264 that browsers play.

    with Mp4Writer('out/video.mp4', fps=25) as writer:
        for frame in frames:          # uint8 (H, W, 3) RGB, all the same size
            writer.write(frame)

With PyAV (requirements-app.txt) the video is H.264 (libx264, yuv420p) with its index ('moov')
before the frames, so a browser plays it while it loads; yuv420p needs an even width and height,
so an odd one gets one more column or row, a copy of the last. Without PyAV (or its libx264) it is
OpenCV's MPEG-4 Part 2 ('mp4v'), which browsers do not play, with one warning line per process.
Frames go to a temporary file beside the target; close() checks that the file is whole
and renames it onto the target. An exception inside the `with` block (or abort()) deletes
the temporary file, so an interrupted run or a full disk leaves no half-written MP4 under
the final name.
"""
import contextlib
import os
import struct
from fractions import Fraction

import numpy as np

from utils.cli import print_line
from utils.errors import UserError
from utils.files import Temporary, write_error

_FALLBACK_WARNED = False


def top_level_boxes(path):
    """The kinds of the file's top-level MP4 boxes in order (b'ftyp', b'moov', ...), or None when the file is not
    a run of whole boxes."""
    size = os.path.getsize(path)
    kinds, offset = [], 0
    with open(path, 'rb') as file:
        while offset < size:
            file.seek(offset)
            header = file.read(16)
            if len(header) < 8:
                return None
            box_size, kind = struct.unpack('>I4s', header[:8])
            if box_size == 1 and len(header) == 16:  # a 64-bit size follows the type
                box_size = struct.unpack('>Q', header[8:])[0]
            elif box_size == 0:  # the box runs to the end of the file
                box_size = size - offset
            if box_size < 8:
                return None
            kinds.append(kind)
            offset += box_size
    return kinds if offset == size else None


def _is_complete_mp4(path):
    """Whether the file is a run of whole MP4 boxes that includes 'moov', the index the muxer writes last.

    OpenCV's writer reports no failed write (a full disk, a file size limit): only the file shows it.
    """
    return b'moov' in (top_level_boxes(path) or ())


class _H264Encoder:
    """PyAV's libx264 into an MP4 container with the index first (+faststart)."""

    def __init__(self, av, path, fps, frame_size):
        self._av = av
        height, width = frame_size
        self._pad = (height % 2, width % 2)
        self._container = av.open(path, 'w', format='mp4', options={'movflags': '+faststart'})
        try:
            self._stream = self._container.add_stream('libx264', rate=Fraction(fps).limit_denominator(1001))
            self._stream.height, self._stream.width = height + self._pad[0], width + self._pad[1]
            self._stream.pix_fmt = 'yuv420p'
        except BaseException:
            self._container.close()
            raise

    def write(self, frame_rgb):
        if any(self._pad):
            frame_rgb = np.pad(frame_rgb, ((0, self._pad[0]), (0, self._pad[1]), (0, 0)), mode='edge')
        self._mux(self._stream.encode(self._av.VideoFrame.from_ndarray(frame_rgb, format='rgb24')))

    def close(self):
        try:
            self._mux(self._stream.encode())  # flush the frames the encoder holds back
        finally:
            self._container.close()

    def abort(self):
        with contextlib.suppress(Exception):
            self._container.close()

    def _mux(self, packets):
        for packet in packets:
            self._container.mux(packet)


class _Mp4vEncoder:
    """OpenCV's MPEG-4 Part 2, for installs without PyAV."""

    def __init__(self, path, fps, frame_size):
        import cv2
        height, width = frame_size
        self._cv2 = cv2
        self._writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'mp4v'), fps, (width, height))
        if not self._writer.isOpened():
            raise OSError('OpenCV lacks the mp4v codec, or the folder is not writable')

    def write(self, frame_rgb):
        self._writer.write(self._cv2.cvtColor(frame_rgb, self._cv2.COLOR_RGB2BGR))

    def close(self):
        self._writer.release()

    abort = close


def _encoder(path, fps, frame_size):
    global _FALLBACK_WARNED
    try:
        import av
    except ImportError:
        av = None
    if av is not None and 'libx264' in av.codecs_available:
        return _H264Encoder(av, path, fps, frame_size)
    if not _FALLBACK_WARNED:
        _FALLBACK_WARNED = True
        missing = 'PyAV is not installed' if av is None else "PyAV's FFmpeg lacks libx264"
        print_line(f'warning: {missing}, so overlay videos are MPEG-4 Part 2 (mp4v), which browsers do not play; '
                   f'pip install -r requirements-app.txt writes H.264')
    return _Mp4vEncoder(path, fps, frame_size)


class Mp4Writer:
    def __init__(self, path, fps):
        """The first frame written sets the video's size."""
        self.path = os.fspath(path)
        self.fps = float(fps)
        self.frame_size = None
        self.frames_written = 0
        self._encoder = None
        self._temporary = Temporary(self.path)
        self._closed = False

    def _open(self, frame_size):
        try:
            self._encoder = _encoder(self._temporary.create(), self.fps, frame_size)
        except OSError as error:
            self._temporary.remove()
            raise UserError(f'{self.path}: cannot open an MP4 writer ({error})') from None
        self.frame_size = tuple(frame_size)

    def write(self, frame_rgb):
        """Append one uint8 (H, W, 3) RGB frame."""
        if self._closed:
            raise ValueError(f'{self.path}: writer already closed')
        frame = np.asarray(frame_rgb)
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f'{self.path}: frames must be (H, W, 3) RGB, got {frame.shape}')
        if self._encoder is None:
            self._open(frame.shape[:2])
        if frame.shape[:2] != self.frame_size:
            raise ValueError(f'{self.path}: frame of size {frame.shape[:2]} differs from the video\'s {self.frame_size}')
        try:
            self._encoder.write(np.ascontiguousarray(frame, dtype=np.uint8))
        except OSError as error:
            raise write_error(self.path, error) from None
        self.frames_written += 1

    def close(self):
        """Finish the file, check that it is whole, and rename it onto the target. With no frames written, no
        file is made; a file that came out incomplete is deleted (UserError)."""
        if self._closed:
            return
        self._closed = True
        if self._encoder is None:
            return
        try:
            encoder, self._encoder = self._encoder, None
            encoder.close()
            if self.frames_written == 0:
                self._temporary.remove()
                return
            if not _is_complete_mp4(self._temporary.path):
                raise write_error(self.path, 'the video came out incomplete, as when the disk is full')
            self._temporary.commit()
        except BaseException as error:
            self._temporary.remove()
            if isinstance(error, OSError):
                raise write_error(self.path, error) from None
            raise

    def abort(self):
        """Stop and delete the temporary file; the target is left as it was."""
        self._closed = True
        if self._encoder is not None:
            self._encoder.abort()
            self._encoder = None
        self._temporary.remove()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False
