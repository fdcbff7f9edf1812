"""The evaluation layouts (DAVIS 2017, YouTube-VOS 2018 valid, long videos, a plain frame folder) as `Sequence`s.

Everything is checked up front: a missing folder, a listed sequence without frames,
a missing first-frame mask or an annotation that matches no frame raises one
`UserError` line that names the path and what was expected. Frames themselves are
decoded later, by `dataset.frame_stream.stream_frames`.
"""
import json
import os
from dataclasses import dataclass

from utils.errors import UserError
from utils.names import check_plain_name, read_name_list

FRAME_EXTENSIONS = ('.jpg', '.jpeg', '.png')
YOUTUBE_HEIGHT = 495

_DAVIS_LAYOUT = ('DAVIS 2017 layout: ROOT/JPEGImages/480p/<seq>/*.jpg, ROOT/Annotations/480p/<seq>/*.png, '
                 'ROOT/ImageSets/{split}')
_YOUTUBE_LAYOUT = ('YouTube-VOS 2018 valid layout: ROOT/JPEGImages/<video>/*.jpg, '
                   'ROOT/Annotations/<video>/*.png, ROOT/meta.json')
_LONG_LAYOUT = 'long-video layout: ROOT/JPEGImages/<video>/*.jpg|*.png, ROOT/Annotations/<video>/*.png, ROOT/val.txt'


@dataclass
class Sequence:
    """One video to segment.

    given_masks: frame index -> mask PNG of the objects that start at that frame.
    given_objects: frame index -> the object ids that start there (YouTube-VOS: the
        given mask of object i is the pixels == i of that frame's file; the file's other
        labels are ignored); None: every label in a given mask is an object starting there.
    """
    name: str
    frame_paths: list[str]                  # sorted by file name
    frame_names: list[str]                  # output names (file stems) of those frames
    given_masks: dict[int, str]             # frame index -> mask PNG path
    object_labels: list[int] | None = None  # YouTube-VOS: object ids from meta.json (sorted); None: labels of the first given mask
    frames_to_write: set[int] | None = None  # YouTube-VOS: indices of the frames listed in meta.json; None: all
    annotation_dir: str | None = None       # ground-truth folder for scoring (DAVIS, long videos); None for YouTube-VOS valid
    resize_height: int | None = None        # 495 for YouTube-VOS, else None
    given_objects: dict[int, list[int]] | None = None

    def __len__(self):
        return len(self.frame_paths)

    @property
    def first_given(self):
        """Index of the first frame with a given mask (where inference starts)."""
        return min(self.given_masks)


def _require_dir(path, what):
    if not os.path.isdir(path):
        raise UserError(f'{path}: folder not found; {what}')


def _require_file(path, what):
    if not os.path.isfile(path):
        raise UserError(f'{path}: file not found; {what}')


def list_frames(folder, what='frames'):
    """Sorted frame file paths (.jpg/.jpeg/.png) of `folder` and their stems; UserError if there are none."""
    if not os.path.isdir(folder):
        raise UserError(f'{folder}: {what} folder not found (expected *.jpg or *.png frames)')
    files = sorted(f for f in os.listdir(folder)
                   if f.lower().endswith(FRAME_EXTENSIONS) and not f.startswith('.')
                   and os.path.isfile(os.path.join(folder, f)))
    if not files:
        raise UserError(f'{folder}: no frames (expected *.jpg or *.png images)')
    stems = [os.path.splitext(f)[0] for f in files]
    seen = {}
    for f, stem in zip(files, stems):
        if stem in seen:
            raise UserError(f'{os.path.join(folder, f)}: two frames named {stem!r} '
                            f'({seen[stem]} and {f}); keep one image per frame name')
        seen[stem] = f
    return [os.path.join(folder, f) for f in files], stems


def _check_annotations(annotation_dir, frame_names, frames_dir):
    """Every PNG in `annotation_dir` must be named after a frame."""
    names = set(frame_names)
    for f in sorted(os.listdir(annotation_dir)):
        if not f.lower().endswith('.png') or f.startswith('.'):
            continue
        if os.path.splitext(f)[0] not in names:
            raise UserError(f'{os.path.join(annotation_dir, f)}: annotation does not correspond to any frame '
                            f'in {frames_dir} (mask names must be the frame names with .png)')


def _read_list(path):
    names = read_name_list(path)
    if not names:
        raise UserError(f'{path}: lists no sequences (expected one sequence name per line)')
    return names


def _first_mask_sequence(name, frames_dir, annotation_dir, what):
    """A sequence whose first frame's mask gives the objects (DAVIS, long videos, own frames)."""
    paths, stems = list_frames(frames_dir, f'{what} frames')
    first_mask = os.path.join(annotation_dir, stems[0] + '.png')
    if not os.path.isfile(first_mask):
        raise UserError(f'{first_mask}: first-frame mask of {what} {name!r} not found '
                        f'(frame {paths[0]} needs a mask named {stems[0]}.png)')
    _check_annotations(annotation_dir, stems, frames_dir)
    return Sequence(name=name, frame_paths=paths, frame_names=stems, given_masks={0: first_mask},
                    object_labels=None, frames_to_write=None, annotation_dir=annotation_dir, resize_height=None)


def _listed_sequences(root, frames_root, annotations_root, list_file, layout, what):
    """The first-mask sequences named in `list_file`, each with frames_root/<name> and annotations_root/<name>."""
    for path, check in ((frames_root, _require_dir), (annotations_root, _require_dir), (list_file, _require_file)):
        check(path, f'{root} is not in the {layout}')
    sequences = []
    for name in _read_list(list_file):
        frames_dir = os.path.join(frames_root, name)
        if not os.path.isdir(frames_dir):
            raise UserError(f'{frames_dir}: {what} {name!r} listed in {list_file} has no frames folder')
        sequences.append(_first_mask_sequence(name, frames_dir, os.path.join(annotations_root, name), what))
    return sequences


def davis_sequences(root, split='2017/val.txt'):
    """The sequences of a DAVIS 2017 split (480p), in the order the split file lists them."""
    layout = _DAVIS_LAYOUT.format(split=split)
    _require_dir(root, f'expected a DAVIS dataset folder ({layout})')
    return _listed_sequences(root, os.path.join(root, 'JPEGImages', '480p'), os.path.join(root, 'Annotations', '480p'),
                             os.path.join(root, 'ImageSets', split), layout, 'sequence')


def long_video_sequences(root):
    """The videos listed in ROOT/val.txt of the long-video layout."""
    _require_dir(root, f'expected a long-video dataset folder ({_LONG_LAYOUT})')
    return _listed_sequences(root, os.path.join(root, 'JPEGImages'), os.path.join(root, 'Annotations'),
                             os.path.join(root, 'val.txt'), _LONG_LAYOUT, 'video')


def frame_folder_sequence(folder, mask_path, name=None):
    """A plain folder of .jpg/.png frames (sorted by name) whose first frame's mask is `mask_path`."""
    folder = os.fspath(folder)
    paths, stems = list_frames(folder, 'video')
    mask_path = os.fspath(mask_path)
    if not os.path.isfile(mask_path):
        raise UserError(f'{mask_path}: first-frame mask not found (it gives the objects of frame {paths[0]})')
    name = name or os.path.basename(os.path.normpath(os.path.abspath(folder)))
    return Sequence(name=name, frame_paths=paths, frame_names=stems, given_masks={0: mask_path},
                    object_labels=None, frames_to_write=None, annotation_dir=None, resize_height=None)


def _load_meta(meta_path):
    try:
        with open(meta_path) as f:
            meta = json.load(f)
    except (OSError, ValueError) as error:
        raise UserError(f'{meta_path}: cannot read it as JSON ({error})') from None
    videos = meta.get('videos') if isinstance(meta, dict) else None
    if not isinstance(videos, dict) or not videos:
        raise UserError(f'{meta_path}: expected {{"videos": {{video: {{"objects": {{"1": '
                        f'{{"category": ..., "frames": [...]}}}}}}}}}} with at least one video')
    return videos


def youtube_sequences(root):
    """The videos of ROOT/meta.json (YouTube-VOS 2018 valid), sorted by name.

    Objects may start after the video's first frame: object i's given mask is the
    pixels == i of `Annotations/<video>/<frames[0]>.png`, frames[0] being the first
    frame meta.json lists for it.
    """
    _require_dir(root, f'expected a YouTube-VOS valid folder ({_YOUTUBE_LAYOUT})')
    frames_root = os.path.join(root, 'JPEGImages')
    annotations_root = os.path.join(root, 'Annotations')
    meta_path = os.path.join(root, 'meta.json')
    for path, check in ((frames_root, _require_dir), (annotations_root, _require_dir), (meta_path, _require_file)):
        check(path, f'{root} is not in the {_YOUTUBE_LAYOUT}')
    videos = _load_meta(meta_path)
    sequences = []
    for name in sorted(videos):
        check_plain_name(name, f'{meta_path} (video id)')
        entry = videos[name]
        objects = entry.get('objects') if isinstance(entry, dict) else None
        if not isinstance(objects, dict) or not objects:
            raise UserError(f'{meta_path}: video {name!r} has no "objects"')
        frames_dir = os.path.join(frames_root, name)
        if not os.path.isdir(frames_dir):
            raise UserError(f'{frames_dir}: video {name!r} listed in {meta_path} has no frames folder')
        paths, stems = list_frames(frames_dir, 'video')
        index = {stem: t for t, stem in enumerate(stems)}
        annotation_dir = os.path.join(annotations_root, name)
        if not os.path.isdir(annotation_dir):
            raise UserError(f'{annotation_dir}: annotations folder of video {name!r} not found '
                            f'(it must hold each object\'s first-frame mask)')
        _check_annotations(annotation_dir, stems, frames_dir)
        given_masks, given_objects, to_write, labels = {}, {}, set(), []
        for key in objects:
            try:
                label = int(key)
            except ValueError:
                raise UserError(f'{meta_path}: video {name!r} has object id {key!r}; ids must be integers') from None
            if not 0 < label < 255:
                raise UserError(f'{meta_path}: video {name!r} has object id {label}; ids must be 1..254')
            frames = objects[key].get('frames') if isinstance(objects[key], dict) else None
            if not isinstance(frames, list) or not frames:
                raise UserError(f'{meta_path}: object {label} of video {name!r} lists no "frames"')
            for frame in frames:
                check_plain_name(str(frame), f'{meta_path} (frame of object {label} of video {name!r})')
                if str(frame) not in index:
                    raise UserError(f'{meta_path}: object {label} of video {name!r} lists frame {frame!r}, '
                                    f'which is not in {frames_dir}')
                to_write.add(index[str(frame)])
            start = index[str(frames[0])]
            mask_path = os.path.join(annotation_dir, f'{frames[0]}.png')
            if not os.path.isfile(mask_path):
                raise UserError(f'{mask_path}: first-frame mask of object {label} of video {name!r} not found')
            given_masks[start] = mask_path
            given_objects.setdefault(start, []).append(label)
            labels.append(label)
        sequences.append(Sequence(
            name=name, frame_paths=paths, frame_names=stems,
            given_masks=dict(sorted(given_masks.items())),
            object_labels=sorted(labels), frames_to_write=to_write, annotation_dir=None,
            resize_height=YOUTUBE_HEIGHT,
            given_objects={t: sorted(ids) for t, ids in sorted(given_objects.items())}))
    return sequences
