"""A clip's downloads: a zip of its results and annotations, and its results over its frames as an MP4.

Each is made, when asked for, under a fixed name in the clip's downloads/ folder (so the clip's name, however
long, never meets the file system there); the browser is offered a name made of the clip's (download_name),
shortened to fit a file name's limit.
"""
import os
import zipfile
from urllib.parse import quote

import numpy as np

from utils.files import atomic_path
from utils.names import MAX_NAME_BYTES, fitted_name
from utils.overlay import overlay
from utils.video_writer import Mp4Writer

# The browser adds a few bytes to the name it writes while downloading ('.crdownload') or when a file of that
# name exists (' (1)').
BROWSER_MARGIN = 16


def write_masks_zip(target):
    """A zip of masks/<frame>.png (every result so far) and annotations/<frame>.png of the ClipFolder
    `target`; returns its path."""
    path = target.download_path('masks.zip')
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, 'w', zipfile.ZIP_STORED) as archive:
        for t, name in enumerate(target.clip.frame_names):
            for folder, source in (('masks', target.result_path(t)), ('annotations', target.annotation_path(t))):
                try:
                    archive.write(source, f'{folder}/{name}.png')
                except FileNotFoundError:
                    continue
    return path


def write_overlay_video(target):
    """The results of the ClipFolder `target` over its frames as an MP4 at the clip's frame rate; returns its
    path."""
    clip = target.clip
    path = target.download_path('overlay.mp4')
    empty = np.zeros(clip.size, np.uint8)
    with Mp4Writer(path, clip.fps) as video:
        for t in range(clip.frame_count):
            labels = target.result(t)
            video.write(overlay(clip.frame_rgb(t), empty if labels is None else labels))
    return path


def download_name(stem, suffix, max_bytes=MAX_NAME_BYTES - BROWSER_MARGIN):
    """`stem` + `suffix` as a file name of at most `max_bytes` bytes: a longer stem is fitted (utils.names.fitted_name:
    cut, with a hash of the whole stem)."""
    return fitted_name(stem, max_bytes - len(os.fsencode(suffix))) + suffix


def content_disposition(name):
    """The Content-Disposition header that offers `name` for saving: RFC 6266's filename* holds any letter,
    filename an ASCII stand-in for clients that do not read filename*."""
    ascii_name = ''.join(c if c.isascii() and (c.isalnum() or c in '._-') else '_' for c in name)
    return f'attachment; filename="{ascii_name}"; filename*=UTF-8\'\'{quote(name, safe="")}'
