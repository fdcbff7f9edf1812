"""A segmented clip's exports for other tools, written from its label masks (and its frames, for the kinds that
show them): eval.py --export and the app's downloads.

    write_exports(folder, ('objects', 'coco'), clip)      # clip: a LabelledClip

Kinds, each in `folder`:
    palette   masks/<frame>.png               the label masks as palette PNGs, as eval.py writes its results
    objects   objects/<label>/<frame>.png     black and white per object (255 on the object, 0 elsewhere)
    rgba      rgba/<label>/<frame>.png        the frame with the object's alpha (255 on it, 0 elsewhere), for editors
    coco      coco.json                       COCO-style: one RLE segmentation per object per frame (pycocotools)
    mp4       overlay.mp4                     the masks over the frames (utils.overlay) at the clip's frame rate

Per-object kinds hold every frame for every object of the clip (an empty mask where it is absent). In COCO,
each object is a category whose id is its label, each frame an image whose id is its number from 1, and an
object absent from a frame has no annotation there. Each kind is written whole or not at all: a folder in a
temporary folder renamed into place when complete, a file atomically, so an interrupted export leaves no part
of a kind (a rerun finds the kinds still missing: missing_kinds).
"""
import contextlib
import json
import os
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np
from PIL import Image
from pycocotools import mask as coco_mask

from dataset.frame_stream import VideoFile, read_video_frames
from utils.errors import UserError
from utils.files import atomic_folder, atomic_path, remove_stale_temporaries
from utils.images import read_rgb
from utils.masks import label_mask_image, present_labels, read_label_mask
from utils.names import check_plain_name, path_inside
from utils.overlay import overlay
from utils.video_writer import Mp4Writer

EXPORT_KINDS = ('palette', 'objects', 'rgba', 'coco', 'mp4')
OUTPUTS = {'palette': 'masks', 'objects': 'objects', 'rgba': 'rgba', 'coco': 'coco.json', 'mp4': 'overlay.mp4'}
_FOLDER_KINDS = ('palette', 'objects', 'rgba')
_PER_OBJECT = ('objects', 'rgba')
_SHOW_FRAMES = ('rgba', 'mp4')


@dataclass
class LabelledClip:
    """What the exports read: a clip's frames, in order, and their label masks."""
    name: str
    frame_names: list                           # output names, one plain file name each (no extension)
    fps: float
    labels: Callable[[int], np.ndarray | None]  # frame t's uint8 (H, W) label mask; None: it has none (yet)
    frames_rgb: Callable[[], Iterable]          # the frames as uint8 (H, W, 3) in order; read for rgba and mp4 only
    file_names: list | None = None              # the frames' image files, named in COCO (default <frame>.jpg)


def parse_export_kinds(text):
    """The kinds of a comma-separated --export value, in the order given."""
    return tuple(dict.fromkeys(kind.strip() for kind in text.split(',') if kind.strip()))


def export_kinds_problem(kinds, choices=EXPORT_KINDS):
    """Why `kinds` is refused (an unknown kind, or none), or None."""
    unknown = [kind for kind in kinds if kind not in choices]
    if unknown or not kinds:
        return f'{"unknown kind " + repr(unknown[0]) if unknown else "names no kind"}; give one or more of ' \
               f'{", ".join(choices)}, separated by commas'
    return None


def missing_kinds(folder, kinds):
    """The kinds among `kinds` not written whole in `folder` yet."""
    return tuple(kind for kind in kinds if not os.path.exists(os.path.join(folder, OUTPUTS[kind])))


def _object_png(path, mask):
    Image.fromarray(mask.astype(np.uint8) * 255, 'L').save(path)


def _rgba_png(path, rgb, mask):
    # zlib level 1: a 1080p frame in a quarter of the default level's time, for files about 15% larger
    Image.fromarray(np.dstack([rgb, mask.astype(np.uint8) * 255]), 'RGBA').save(path, compress_level=1)


class _Coco:
    """The COCO-style document of a clip, built frame by frame."""

    def __init__(self, clip):
        self.document = {'info': {'description': f'object masks of {clip.name}', 'video': clip.name, 'fps': clip.fps},
                         'images': [], 'annotations': [], 'categories': []}
        self._labels = set()

    def add(self, t, file_name, labels):
        height, width = labels.shape
        self.document['images'].append({'id': t + 1, 'file_name': file_name, 'width': width, 'height': height,
                                        'frame_index': t})
        for label in present_labels(labels):
            rle = coco_mask.encode(np.asfortranarray(labels == label, dtype=np.uint8))
            self.document['annotations'].append({
                'id': len(self.document['annotations']) + 1, 'image_id': t + 1, 'category_id': label,
                'segmentation': {'size': [height, width], 'counts': rle['counts'].decode('ascii')},
                'area': float(coco_mask.area(rle)), 'bbox': coco_mask.toBbox(rle).tolist(), 'iscrowd': 0})
            self._labels.add(label)

    def write(self, path):
        self.document['categories'] = [{'id': label, 'name': f'object {label}', 'supercategory': 'object'}
                                       for label in sorted(self._labels)]
        with atomic_path(path) as tmp, open(tmp, 'w') as file:
            json.dump(self.document, file)


def _frame_size_and_objects(clip, per_object):
    """(H, W) of the clip's masks and, when `per_object`, every object label in them (read once more later)."""
    size, objects = None, set()
    for t in range(len(clip.frame_names)):
        labels = clip.labels(t)
        if labels is not None:
            size = size or labels.shape
            if not per_object:
                break
            objects.update(present_labels(labels))
    if size is None:
        raise UserError(f'{clip.name}: no frame has a mask yet; segment the clip before exporting it')
    return size, sorted(objects)


def write_exports(folder, kinds, clip):
    """Write the `kinds` (EXPORT_KINDS) of `clip` (a LabelledClip) in `folder`; what a killed export left there is
    removed first."""
    names = [check_plain_name(name, f'{clip.name}, frame name') for name in clip.frame_names]
    file_names = clip.file_names or [f'{name}.jpg' for name in names]
    size, objects = _frame_size_and_objects(clip, any(kind in _PER_OBJECT for kind in kinds))
    remove_stale_temporaries(folder)
    with contextlib.ExitStack() as stack:
        folders = {kind: stack.enter_context(atomic_folder(path_inside(folder, OUTPUTS[kind])))
                   for kind in kinds if kind in _FOLDER_KINDS}
        for kind in _PER_OBJECT:
            for label in objects if kind in folders else ():
                os.mkdir(os.path.join(folders[kind], str(label)))
        video = stack.enter_context(Mp4Writer(path_inside(folder, OUTPUTS['mp4']), clip.fps)) if 'mp4' in kinds \
            else None
        coco = _Coco(clip) if 'coco' in kinds else None
        frames = iter(clip.frames_rgb()) if any(kind in _SHOW_FRAMES for kind in kinds) else None
        for t, name in enumerate(names):
            labels = clip.labels(t)
            given = labels is not None
            labels = labels if given else np.zeros(size, np.uint8)
            rgb = _next_frame(frames, clip, name, size)
            if 'palette' in folders and given:
                label_mask_image(labels).save(os.path.join(folders['palette'], f'{name}.png'))
            for label in objects:
                mask = labels == label
                if 'objects' in folders:
                    _object_png(os.path.join(folders['objects'], str(label), f'{name}.png'), mask)
                if 'rgba' in folders:
                    _rgba_png(os.path.join(folders['rgba'], str(label), f'{name}.png'), rgb, mask)
            if coco is not None:
                coco.add(t, file_names[t], labels)
            if video is not None:
                video.write(overlay(rgb, labels))
        if coco is not None:
            coco.write(path_inside(folder, OUTPUTS['coco']))


def _next_frame(frames, clip, name, size):
    if frames is None:
        return None
    rgb = next(frames, None)
    if rgb is None:
        raise UserError(f'{clip.name}: frame {name} could not be read again for the export; the clip may have '
                        f'changed since it was segmented')
    rgb = np.asarray(rgb)
    if rgb.shape[:2] != tuple(size):
        raise UserError(f'{clip.name}: frame {name} is {rgb.shape[1]}x{rgb.shape[0]}, its mask '
                        f'{size[1]}x{size[0]}; masks and frames must have one size')
    return rgb


def segmented_clip(source, masks_folder, frame_count=None):
    """The LabelledClip of a video eval.py segmented: `source` (dataset.eval_sets.Sequence or
    dataset.frame_stream.VideoFile) whose label PNGs are in `masks_folder`; `frame_count`: the frames a
    video file's run wrote."""
    if isinstance(source, VideoFile):
        names = [f'{t:05d}' for t in range(frame_count)]  # as dataset.frame_stream names a video's frames
        file_names = None

        def frames_rgb():
            return (rgb for _, rgb in read_video_frames(source.path))
    else:
        indices = [t for t in range(len(source)) if source.writes(t)]
        names = [source.frame_names[t] for t in indices]
        file_names = [os.path.basename(source.frame_paths[t]) for t in indices]

        def frames_rgb():
            return (np.asarray(read_rgb(source.frame_paths[t])) for t in indices)

    def labels(t):
        path = path_inside(masks_folder, f'{names[t]}.png')
        return read_label_mask(path) if os.path.isfile(path) else None

    return LabelledClip(source.name, names, source.fps, labels, frames_rgb, file_names)
