"""Overlay MP4s: H.264 that browsers play (PyAV), or mp4v with one warning when PyAV is missing."""
import sys

import numpy as np
import pytest

from utils import video_writer
from utils.video_writer import Mp4Writer, top_level_boxes


def _frames(n, height, width):
    rows, cols = np.mgrid[0:height, 0:width]
    return [np.stack([(rows * 4 + t * 9) % 256, (cols * 3) % 256, np.full_like(rows, 40 * t % 256)],
                     axis=-1).astype(np.uint8) for t in range(n)]


def _write(path, frames, fps):
    with Mp4Writer(str(path), fps=fps) as writer:
        for frame in frames:
            writer.write(frame)
    return writer


def test_the_video_is_h264_yuv420p_with_its_index_first_and_an_odd_size_padded_by_a_copied_column_and_row(tmp_path):
    av = pytest.importorskip('av')
    frames = _frames(6, 49, 65)
    writer = _write(tmp_path / 'overlay.mp4', frames, fps=30000 / 1001)
    assert (writer.frame_size, writer.frames_written) == ((49, 65), 6)
    boxes = top_level_boxes(tmp_path / 'overlay.mp4')
    assert boxes.index(b'moov') < boxes.index(b'mdat')  # faststart: a browser plays it while it loads
    with av.open(str(tmp_path / 'overlay.mp4')) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.codec_context.pix_fmt) == ('h264', 'yuv420p')
        assert (stream.codec_context.height, stream.codec_context.width) == (50, 66)
        assert float(stream.average_rate) == pytest.approx(29.97, abs=0.01)
        decoded = [frame.to_ndarray(format='rgb24') for frame in container.decode(stream)]
    assert len(decoded) == 6
    for frame, got in zip(frames, decoded):
        padded = np.pad(frame, ((0, 1), (0, 1), (0, 0)), mode='edge').astype(int)
        assert np.abs(got.astype(int) - padded).mean() < 6  # lossy, but the same picture


@pytest.mark.parametrize('missing', ['PyAV is not installed', "PyAV's FFmpeg lacks libx264"])
def test_without_pyav_the_video_is_mp4v_with_one_warning_line_per_process(tmp_path, monkeypatch, capsys, missing):
    if missing.startswith('PyAV is'):
        monkeypatch.setitem(sys.modules, 'av', None)  # `import av` raises ImportError
    else:
        monkeypatch.setattr(pytest.importorskip('av'), 'codecs_available', set())
    monkeypatch.setattr(video_writer, '_FALLBACK_WARNED', False)
    for name in ('a.mp4', 'b.mp4'):
        _write(tmp_path / name, _frames(3, 48, 64), fps=10)
    warnings = capsys.readouterr().err.strip().splitlines()
    assert len(warnings) == 1 and warnings[0].startswith(f'warning: {missing}, so overlay videos are MPEG-4')
    data = (tmp_path / 'b.mp4').read_bytes()
    assert b'mp4v' in data and b'avc1' not in data  # the sample entry names the codec
    assert top_level_boxes(tmp_path / 'b.mp4') is not None
