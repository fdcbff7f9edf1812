"""The dataset layouts on disk: their descriptions, the pretraining set names, and the parser of
the layouts that list their videos in a text file (DAVIS 2017 splits, long videos).

Missing folders and listed videos without folders raise one UserError line naming the
path and the expected layout; every listed name must be a plain name (utils.names).
"""
import os

from utils.errors import UserError
from utils.names import read_name_list

# The static-image sets of level 0 (assets/pretrain.txt lists them; unify_pretrain_dataset.py makes them).
PRETRAIN_SETS = ('COCO', 'ECSSD', 'MSRA10K', 'PASCAL-S', 'PASCALVOC2012')

DAVIS_LAYOUT = ('the DAVIS 2017 layout: ROOT/JPEGImages/480p/<seq>/*.jpg, ROOT/Annotations/480p/<seq>/*.png, '
                'ROOT/ImageSets/2017/<split>.txt (one sequence a line)')
LONG_VIDEO_LAYOUT = ('the long-video layout: ROOT/JPEGImages/<video>/*.jpg|*.png, ROOT/Annotations/<video>/*.png, '
                     'ROOT/val.txt (one video a line)')
YOUTUBE_VALID_LAYOUT = ('the YouTube-VOS 2018 valid layout: ROOT/JPEGImages/<video>/*.jpg, '
                        'ROOT/Annotations/<video>/*.png, ROOT/meta.json')
YOUTUBE_TRAIN_LAYOUT = ('the YouTube-VOS 2018 train layout: ROOT/JPEGImages/<video>/<frame>.jpg '
                        'and ROOT/Annotations/<video>/<frame>.png')
PRETRAIN_LAYOUT = ('the pretrain layout written by unify_pretrain_dataset.py: ROOT/JPEGImages/<SET>/*.jpg|*.png '
                   'and ROOT/Annotations/<SET>/*.png, SET in ' + ', '.join(PRETRAIN_SETS))


def dataset_input_folders(root):
    """The folders of an evaluation dataset (every level) that hold its frames and its annotations."""
    return [os.path.join(root, 'JPEGImages'), os.path.join(root, 'Annotations')]


def require_dir(path, layout):
    if not os.path.isdir(path):
        raise UserError(f'{path}: folder not found; expected {layout}')


def require_file(path, layout):
    if not os.path.isfile(path):
        raise UserError(f'{path}: file not found; expected {layout}')


def chosen(names, wanted, source):
    """`names` (in their order), only those in `wanted` when it is given; every wanted name must be there."""
    if wanted is None:
        return list(names)
    unknown = [name for name in wanted if name not in names]
    if unknown:
        shown = ', '.join(sorted(names)[:10]) + (', ...' if len(names) > 10 else '')
        raise UserError(f'{", ".join(unknown)}: not among the videos of {source} (it has {shown})')
    return [name for name in names if name in wanted]


def _listed_videos(root, list_file, frames_root, annotations_root, layout, wanted):
    """[(name, frames folder, annotations folder)] of the videos `list_file` names (those `wanted`), in its order."""
    require_dir(root, layout)
    for path, require in ((frames_root, require_dir), (annotations_root, require_dir), (list_file, require_file)):
        require(path, layout)
    names = read_name_list(list_file)
    if not names:
        raise UserError(f'{list_file}: lists no video; expected {layout}')
    names = chosen(names, wanted, list_file)
    videos = []
    for name in names:
        frames_dir, annotations_dir = os.path.join(frames_root, name), os.path.join(annotations_root, name)
        for folder, what in ((frames_dir, 'frames'), (annotations_dir, 'annotations')):
            if not os.path.isdir(folder):
                raise UserError(f'{folder}: {name!r}, listed in {list_file}, has no {what} folder; expected {layout}')
        videos.append((name, frames_dir, annotations_dir))
    return videos


def davis_split(root, split, wanted=None):
    """The sequences of a DAVIS 2017 split ('train', 'val') at 480p: [(name, frames folder, annotations folder)]."""
    return _listed_videos(root, os.path.join(root, 'ImageSets', '2017', f'{split}.txt'),
                          os.path.join(root, 'JPEGImages', '480p'), os.path.join(root, 'Annotations', '480p'),
                          DAVIS_LAYOUT, wanted)


def long_videos(root, wanted=None):
    """The videos of ROOT/val.txt in the long-video layout: [(name, frames folder, annotations folder)]."""
    return _listed_videos(root, os.path.join(root, 'val.txt'), os.path.join(root, 'JPEGImages'),
                          os.path.join(root, 'Annotations'), LONG_VIDEO_LAYOUT, wanted)
