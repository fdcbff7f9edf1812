"""The videos to segment: DAVIS 2017, YouTube-VOS 2018 valid and long-video layouts, a frame folder
or a video file, each as a source the video runner (model.inference.video_runner) reads.

Everything is checked up front, before a model loads: a missing folder, a listed video
without frames, a missing or objectless first-frame mask, an annotation that matches no
frame raise one `UserError` line naming the path and what was expected. Frames are
decoded later, while the model runs (dataset.frame_stream).
"""
import json
import os
from dataclasses import dataclass

from dataset.frame_stream import VideoFile, check_first_mask, stream_frames
from dataset.layouts import YOUTUBE_VALID_LAYOUT, chosen, davis_split, long_videos, require_dir, require_file
from utils.errors import UserError
from utils.images import list_images
from utils.names import check_plain_name

YOUTUBE_HEIGHT = 495
FOLDER_FPS = 25.0  # frame folders state no frame rate; overlay videos of them play at this one


@dataclass
class Sequence:
    """One video as a folder of frames.

    given_masks: frame index -> mask PNG of the objects given at that frame.
    given_objects: frame index -> the object ids given there (YouTube-VOS: the given mask
        of object i is the pixels == i of that frame's file, the file's other labels are
        ignored); None: every label in a given mask is an object given there.
    object_labels: channels that exist from the start (YouTube-VOS: 1..largest id, as
        released); empty: the objects of the given masks.
    """
    name: str
    frame_paths: list[str]                    # in natural order of file names (utils.images)
    frame_names: list[str]                    # output names (file stems) of those frames
    given_masks: dict[int, str]
    given_objects: dict[int, list[int]] | None = None
    object_labels: tuple[int, ...] = ()
    frames_to_write: set[int] | None = None   # YouTube-VOS: indices of the frames listed in meta.json; None: all
    annotation_dir: str | None = None         # ground truth for scoring (DAVIS, long videos)
    resize_height: int | None = None          # 495 for YouTube-VOS
    working_size: int | None = None           # your own video: utils.images.working_size; None: the native size
    fps = FOLDER_FPS

    def __len__(self):
        return len(self.frame_paths)

    @property
    def first_given(self):
        """Index of the first frame with a given mask (where inference starts)."""
        return min(self.given_masks)

    @property
    def frame_count(self):
        """Frames the runner sees (from the first given one on)."""
        return len(self) - self.first_given

    def frames(self, workers=2):
        """FrameItems from the first given frame on, decoded ahead by `workers` processes."""
        return stream_frames(self, workers=workers, start=self.first_given)

    def writes(self, index):
        """Whether frame `index`'s outputs are written."""
        return index >= self.first_given and (self.frames_to_write is None or index in self.frames_to_write)

    def output_names(self):
        """Names of the frames whose outputs are written."""
        return [self.frame_names[t] for t in range(len(self)) if self.writes(t)]


def list_frames(folder, what='frames'):
    """Frame file paths (.jpg/.jpeg/.png) of `folder` in natural order (10 after 9) and their stems;
    UserError if there are none."""
    if not os.path.isdir(folder):
        raise UserError(f'{folder}: {what} folder not found (expected *.jpg or *.png frames)')
    files = list_images(folder)
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
    for f in list_images(annotation_dir, ('.png',)):
        if os.path.splitext(f)[0] not in names:
            raise UserError(f'{os.path.join(annotation_dir, f)}: annotation does not correspond to any frame '
                            f'in {frames_dir} (mask names must be the frame names with .png)')


def _first_mask_sequence(name, frames_dir, annotation_dir):
    """A video whose first frame's mask gives the objects (DAVIS, long videos)."""
    paths, stems = list_frames(frames_dir, f'{name!r} frames')
    first_mask = os.path.join(annotation_dir, stems[0] + '.png')
    check_first_mask(first_mask, f'frame {paths[0]} of {name!r}')
    _check_annotations(annotation_dir, stems, frames_dir)
    return Sequence(name=name, frame_paths=paths, frame_names=stems, given_masks={0: first_mask},
                    annotation_dir=annotation_dir)


def davis_sequences(root, wanted=None, split='val'):
    """The sequences of a DAVIS 2017 split (480p), in the order the split file lists them (only those
    `wanted`, if given; the others are not read)."""
    return [_first_mask_sequence(*video) for video in davis_split(root, split, wanted)]


def long_video_sequences(root, wanted=None):
    """The videos listed in ROOT/val.txt of the long-video layout (only those `wanted`, if given)."""
    return [_first_mask_sequence(*video) for video in long_videos(root, wanted)]


def frame_folder_sequence(folder, mask_path, name=None, size=None):
    """A plain folder of .jpg/.png frames (in natural order of names) whose first frame's mask is `mask_path`,
    segmented at the working size `size` (None: the native size)."""
    folder = os.fspath(folder)
    paths, stems = list_frames(folder, 'video')
    mask_path = os.fspath(mask_path)
    check_first_mask(mask_path, f'frame {paths[0]}')
    name = name or os.path.basename(os.path.normpath(os.path.abspath(folder)))
    return Sequence(name=name, frame_paths=paths, frame_names=stems, given_masks={0: mask_path}, working_size=size)


def video_name(path):
    """The output name of your own video: its file name without the extension, or its folder's name."""
    return os.path.splitext(os.path.basename(os.path.normpath(path)))[0]


def open_video(path, mask_path, size=None, name=None):
    """Your own video: a folder of frames (a Sequence) or a video file (a VideoFile), named `name` (default:
    video_name(path)), to segment at the working size `size` (utils.images.working_size; None: the native size)."""
    name = name or video_name(path)
    if os.path.isdir(path):
        return frame_folder_sequence(path, mask_path, name=name, size=size)
    check_first_mask(mask_path, path)
    return VideoFile(path, mask_path, name, size)


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


def _youtube_sequence(root, meta_path, name, entry):
    objects = entry.get('objects') if isinstance(entry, dict) else None
    if not isinstance(objects, dict) or not objects:
        raise UserError(f'{meta_path}: video {name!r} has no "objects"')
    frames_dir = os.path.join(root, 'JPEGImages', name)
    if not os.path.isdir(frames_dir):
        raise UserError(f'{frames_dir}: video {name!r} listed in {meta_path} has no frames folder')
    paths, stems = list_frames(frames_dir, 'video')
    index = {stem: t for t, stem in enumerate(stems)}
    annotation_dir = os.path.join(root, 'Annotations', name)
    if not os.path.isdir(annotation_dir):
        raise UserError(f'{annotation_dir}: annotations folder of video {name!r} not found '
                        f'(it must hold each object\'s first-frame mask)')
    _check_annotations(annotation_dir, stems, frames_dir)
    given_masks, given_objects, to_write = {}, {}, set()
    for key, value in objects.items():
        try:
            label = int(key)
        except ValueError:
            raise UserError(f'{meta_path}: video {name!r} has object id {key!r}; ids must be integers') from None
        if not 0 < label < 255:
            raise UserError(f'{meta_path}: video {name!r} has object id {label}; ids must be 1..254')
        frames = value.get('frames') if isinstance(value, dict) else None
        if not isinstance(frames, list) or not frames:
            raise UserError(f'{meta_path}: object {label} of video {name!r} lists no "frames"')
        for frame in frames:
            check_plain_name(str(frame), f'{meta_path} (frame of object {label} of video {name!r})')
            if str(frame) not in index:
                raise UserError(f'{meta_path}: object {label} of video {name!r} lists frame {frame!r}, '
                                f'which is not in {frames_dir}')
            to_write.add(index[str(frame)])
        # The object starts at the first frame listed for it, whatever its mask there holds (as released).
        start = index[str(frames[0])]
        mask_path = os.path.join(annotation_dir, f'{frames[0]}.png')
        if not os.path.isfile(mask_path):
            raise UserError(f'{mask_path}: first-frame mask of object {label} of video {name!r} not found')
        given_masks[start] = mask_path
        given_objects.setdefault(start, []).append(label)
    return Sequence(
        name=name, frame_paths=paths, frame_names=stems, given_masks=dict(sorted(given_masks.items())),
        given_objects={t: sorted(ids) for t, ids in sorted(given_objects.items())},
        # Channels 1..largest id, an id missing in between included (as released).
        object_labels=tuple(range(1, max(int(key) for key in objects) + 1)),
        frames_to_write=to_write, resize_height=YOUTUBE_HEIGHT)


def youtube_sequences(root, wanted=None):
    """The videos of ROOT/meta.json (YouTube-VOS 2018 valid), sorted by name (only those `wanted`, if given).

    Objects may start after the video's first frame: object i's given mask is the
    pixels == i of `Annotations/<video>/<frames[0]>.png`, frames[0] being the first
    frame meta.json lists for it.
    """
    require_dir(root, YOUTUBE_VALID_LAYOUT)
    meta_path = os.path.join(root, 'meta.json')
    for path, require in ((os.path.join(root, 'JPEGImages'), require_dir),
                          (os.path.join(root, 'Annotations'), require_dir), (meta_path, require_file)):
        require(path, YOUTUBE_VALID_LAYOUT)
    videos = _load_meta(meta_path)
    names = chosen([check_plain_name(name, f'{meta_path} (video id)') for name in sorted(videos)], wanted, meta_path)
    return [_youtube_sequence(root, meta_path, name, videos[name]) for name in names]
