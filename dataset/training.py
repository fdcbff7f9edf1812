"""Training clips for the three levels: 0 pretrain on static images, 1 DAVIS 2017, 2 YouTube-VOS 2018.

Every dataset item is ``(frames, masks, obj_n, info)``:
  frames  float32 (clip_n, 3, S, S), RGB in [0, 1] (torchvision's to_tensor);
  masks   float32 (clip_n, obj_n, S, S), one-hot: channel 0 background (void
          and unchosen objects included), channel i the i-th chosen object;
  obj_n   int, chosen objects + 1 (1 when no clip with an object was found in
          `max_retries` draws; the trainer skips such clips);
  info    dict: 'name' (video, or 'SET/image' for pretrain), 'frames' (the
          clip's frame indices into the video's frame list, in natural order; pretrain
          repeats index 0), 'objects' (the chosen label ids, in channel order).

Sampling and augmentation follow the released training code: video levels pick
clip_n distinct random frames in random order (a video shorter than clip_n
fills the rest with random repeats), pretrain repeats one image clip_n times.
Frames after the first get colour jitter and a random affine (pretrain also a
horizontal flip); every frame gets a random resized crop to S, which the video
levels retry up to 10 times until it holds a pixel of an object (on the first
frame any object, on later frames a chosen one). Objects are chosen, up to
obj_n - 1, among those in the first frame's crop. A clip whose first frame has
none comes back with obj_n 1 and the trainer skips it, no update, as the released
loop does (`max_retries` above 1 draws other clips instead, up to that many).

Frame and object choices use Python's `random`; transform parameters use
torch's RNG. Seeding both (and numpy) makes items reproducible.
"""
import os
import random
from dataclasses import dataclass

import numpy as np
import torch
from torchvision.transforms import InterpolationMode
import torchvision.transforms.functional as F

from dataset import transforms as P
from dataset.layouts import (DAVIS_LAYOUT, PRETRAIN_LAYOUT, PRETRAIN_SETS, YOUTUBE_TRAIN_LAYOUT, davis_split,
                             require_dir)
from utils.errors import UserError
from utils.images import IMAGE_EXTENSIONS, list_images, natural_sorted, opened_image, read_rgb
from utils.masks import VOID_LABEL, label_mask_image, read_label_mask
from utils.names import read_name_list

DEFAULT_PRETRAIN_LIST = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                     'assets', 'pretrain.txt')
CROP_TRIES = 10


def _say(message):
    print(message, flush=True)


def _stems(folder, extensions):
    """{stem: file name} of the images in `folder` whose extension (any case) is in `extensions`."""
    found = {}
    for name in list_images(folder, extensions):
        found.setdefault(os.path.splitext(name)[0], name)
    return found


def _check_same_size(image_path, image_size, mask_path, mask_size):
    if mask_size != image_size:
        raise UserError(f'{mask_path}: mask is {mask_size[0]}x{mask_size[1]} but its image {image_path} '
                        f'is {image_size[0]}x{image_size[1]}; a mask must have its frame\'s size')


def load_pair(image_path, mask_path):
    """A PIL RGB image and its PIL 'P' label mask; a size mismatch is a UserError."""
    image = read_rgb(image_path, 'image file')
    mask = label_mask_image(read_label_mask(mask_path))
    _check_same_size(image_path, image.size, mask_path, mask.size)
    return image, mask


def check_headers(pairs):
    """Read the header of every (image, mask) pair once, before training: a file that cannot be read, is over
    MAX_IMAGE_PIXELS or has another size than its pair is refused now, not when a clip samples it (maybe epochs
    later)."""
    for image_path, mask_path in pairs:
        with opened_image(image_path, 'image file') as image, opened_image(mask_path, 'mask file') as mask:
            _check_same_size(image_path, image.size, mask_path, mask.size)


def _pick_frames(n_frames, clip_n):
    """clip_n distinct random frame indices in random order (random repeats if the video is shorter)."""
    picked = random.sample(range(n_frames), min(clip_n, n_frames))
    if len(picked) < clip_n:
        picked += random.choices(range(n_frames), k=clip_n - len(picked))
    return picked


class _ClipDataset(torch.utils.data.Dataset):
    """Shared clip assembly; subclasses set the transforms and say which images make a clip."""

    crop_tries = 1

    def __init__(self, output_size, clip_n, obj_n, max_retries):
        if clip_n < 1:
            raise ValueError(f'clip_n must be at least 1, got {clip_n}')
        if obj_n < 2:
            raise ValueError(f'obj_n must be at least 2 (background and one object), got {obj_n}')
        self.output_size = int(output_size)
        self.clip_n = int(clip_n)
        self.obj_n = int(obj_n)
        self.max_retries = max(1, int(max_retries))

    # Subclasses: the clip's name, frame indices and (image, mask) pairs for one sampling attempt.
    def _sample(self, index):
        raise NotImplementedError

    def _later_frame(self, image, mask):
        return self.affine(*self.jitter(image, mask))

    def _crop(self, image, mask, wanted):
        """Random resized crop, retried up to `crop_tries` times until it holds a label in `wanted`.

        `wanted` None means any object label. Returns the cropped image and label array
        (the last try's when none held one).
        """
        for _ in range(self.crop_tries):
            image_roi, mask_roi = self.crop(image, mask)
            labels = np.array(mask_roi, np.uint8)
            if wanted is None:
                found = ((labels != 0) & (labels != VOID_LABEL)).any()
            else:
                found = np.isin(labels, wanted).any()
            if found:
                break
        return image_roi, labels

    def _assemble(self, pairs):
        """(frames, masks, obj_list) of one attempt, or None when its first frame holds no object."""
        size = self.output_size
        frames = torch.zeros((self.clip_n, 3, size, size), dtype=torch.float32)
        masks = torch.zeros((self.clip_n, self.obj_n, size, size), dtype=torch.float32)
        obj_list = []
        for i, (image, mask) in enumerate(pairs):
            if i > 0:
                image, mask = self._later_frame(image, mask)
            wanted = None if i == 0 else obj_list
            image, labels = self._crop(image, mask, wanted)
            if i == 0:
                masks[i], obj_list = P.to_onehot(labels, self.obj_n)
                if not obj_list:
                    return None
            else:
                masks[i], _ = P.to_onehot(labels, self.obj_n, obj_list)
            frames[i] = F.to_tensor(image)
        return frames, masks, obj_list

    def __getitem__(self, index):
        for _ in range(self.max_retries):
            name, frame_ids, pairs = self._sample(index)
            clip = self._assemble(pairs)
            if clip is not None:
                break
        if clip is None:
            # No object found: an obj_n == 1 clip (background only) that the trainer skips.
            size = self.output_size
            frames = torch.stack([F.to_tensor(F.resize(image, [size, size])) for image, _ in pairs])
            masks = torch.ones((self.clip_n, 1, size, size), dtype=torch.float32)
            return frames, masks, 1, {'name': name, 'frames': list(frame_ids), 'objects': []}
        frames, masks, obj_list = clip
        obj_n = len(obj_list) + 1
        return frames, masks[:, :obj_n].contiguous(), obj_n, {
            'name': name, 'frames': list(frame_ids), 'objects': list(obj_list)}


class _VideoDataset(_ClipDataset):
    """A video level: one item per video, clip_n random distinct frames of it."""

    crop_tries = CROP_TRIES

    def __init__(self, output_size, clip_n, obj_n, max_retries, crop_scale, hue):
        super().__init__(output_size, clip_n, obj_n, max_retries)
        self.jitter = P.ColorJitter(brightness=0.1, contrast=0.1, saturation=0.1, hue=hue)
        self.affine = P.RandomAffine(degrees=15, translate=(0.1, 0.1), scale=(0.95, 1.05), shear=10)
        self.crop = P.RandomResizedCrop(self.output_size, scale=crop_scale, ratio=(0.95, 1.05),
                                        interpolation=InterpolationMode.BILINEAR)
        self.videos = []  # [(name, [(image path, mask path), ...])], set by subclasses

    def __len__(self):
        return len(self.videos)

    def _sample(self, index):
        name, files = self.videos[index]
        frame_ids = _pick_frames(len(files), self.clip_n)
        return name, frame_ids, [load_pair(*files[t]) for t in frame_ids]


class DAVISTrain(_VideoDataset):
    """DAVIS 2017 train (level 1): the sequences of ROOT/ImageSets/2017/<split>.txt.

    Every frame must have its mask (same names); otherwise a UserError names the folder.
    """

    def __init__(self, root, output_size, clip_n, obj_n, split='train', max_retries=1):
        super().__init__(output_size, clip_n, obj_n, max_retries, crop_scale=(0.8, 1.0), hue=0.02)
        self.root = root
        for name, image_dir, mask_dir in davis_split(root, split):
            images = _stems(image_dir, ('.jpg', '.jpeg'))
            masks = _stems(mask_dir, ('.png',))
            if not images:
                raise UserError(f'{image_dir}: no .jpg frames; expected {DAVIS_LAYOUT}')
            if set(images) != set(masks):
                unmasked = sorted(set(images) - set(masks))
                orphans = sorted(set(masks) - set(images))
                raise UserError(
                    f'{image_dir}: {len(images)} frames and {len(masks)} masks in {mask_dir} do not pair up '
                    f'(frames without a mask: {unmasked[:5]}{" ..." if len(unmasked) > 5 else ""}; '
                    f'masks without a frame: {orphans[:5]}{" ..." if len(orphans) > 5 else ""}); '
                    f'every training frame needs a mask of the same name')
            files = [(os.path.join(image_dir, images[s]), os.path.join(mask_dir, masks[s]))
                     for s in natural_sorted(images)]
            self.videos.append((name, files))
        check_headers(pair for _, files in self.videos for pair in files)


class YouTubeTrain(_VideoDataset):
    """YouTube-VOS 2018 train (level 2): the folders of ROOT/JPEGImages that have annotations.

    Frames pair with masks by name; unpaired frames or masks are skipped with a
    message, and so is a video left with no pair.
    """

    def __init__(self, root, output_size, clip_n, obj_n, max_retries=1):
        super().__init__(output_size, clip_n, obj_n, max_retries, crop_scale=(0.3, 0.5), hue=0.02)
        self.root = root
        require_dir(root, YOUTUBE_TRAIN_LAYOUT)
        image_root = os.path.join(root, 'JPEGImages')
        mask_root = os.path.join(root, 'Annotations')
        require_dir(image_root, YOUTUBE_TRAIN_LAYOUT)
        require_dir(mask_root, YOUTUBE_TRAIN_LAYOUT)
        folders = sorted(d for d in os.listdir(image_root) if os.path.isdir(os.path.join(image_root, d)))
        unannotated = [d for d in folders if not os.path.isdir(os.path.join(mask_root, d))]
        if unannotated:
            shown = ', '.join(unannotated[:5]) + (' ...' if len(unannotated) > 5 else '')
            _say(f'{mask_root}: {len(unannotated)} of {len(folders)} videos have no annotation folder '
                 f'({shown}); skipped')
        for name in folders:
            if name in unannotated:
                continue
            image_dir = os.path.join(image_root, name)
            mask_dir = os.path.join(mask_root, name)
            images = _stems(image_dir, ('.jpg', '.jpeg'))
            masks = _stems(mask_dir, ('.png',))
            paired = natural_sorted(set(images) & set(masks))
            unpaired = len(images) + len(masks) - 2 * len(paired)
            if not paired:
                _say(f'{image_dir}: no frame has a mask of the same name in {mask_dir}; video skipped')
                continue
            if unpaired:
                _say(f'{image_dir}: {len(images) - len(paired)} frames without a mask and '
                     f'{len(masks) - len(paired)} masks without a frame; skipped')
            files = [(os.path.join(image_dir, images[s]), os.path.join(mask_dir, masks[s])) for s in paired]
            self.videos.append((name, files))
        if not self.videos:
            raise UserError(f'{root}: no video with annotated frames; expected {YOUTUBE_TRAIN_LAYOUT}')
        check_headers(pair for _, files in self.videos for pair in files)


def read_pretrain_sets(path=DEFAULT_PRETRAIN_LIST):
    """The set names listed in a pretrain list file (assets/pretrain.txt), one a line."""
    if not os.path.isfile(path):
        raise UserError(f'{path}: pretrain set list not found; it lists one set a line, '
                        f'from {", ".join(PRETRAIN_SETS)}')
    return read_name_list(path)


class PretrainImages(_ClipDataset):
    """Static-image pretraining (level 0): one item per image, repeated clip_n times as a clip.

    `sets` lists the set folders to use (default: read from assets/pretrain.txt).
    A set that is missing, or whose image and mask counts differ, is skipped with
    a message; an image with no mask of the same name is skipped and counted.
    """

    def __init__(self, root, output_size, clip_n, obj_n, sets=None, max_retries=1):
        super().__init__(output_size, clip_n, obj_n, max_retries)
        self.root = root
        require_dir(root, PRETRAIN_LAYOUT)
        if sets is None:
            sets = read_pretrain_sets()
        self.sets = []
        self.images = []  # [(name, image path, mask path)]
        for set_name in sets:
            image_dir = os.path.join(root, 'JPEGImages', set_name)
            mask_dir = os.path.join(root, 'Annotations', set_name)
            if not (os.path.isdir(image_dir) and os.path.isdir(mask_dir)):
                _say(f'pretrain set {set_name}: {image_dir} or {mask_dir} not found; set skipped')
                continue
            images = _stems(image_dir, IMAGE_EXTENSIONS)
            masks = _stems(mask_dir, ('.png',))
            if len(images) != len(masks):
                _say(f'pretrain set {set_name}: {len(images)} images but {len(masks)} masks; set skipped')
                continue
            paired = sorted(set(images) & set(masks))
            if len(paired) < len(images):
                _say(f'pretrain set {set_name}: {len(images) - len(paired)} images without a mask skipped')
            for stem in paired:
                self.images.append((f'{set_name}/{stem}', os.path.join(image_dir, images[stem]),
                                    os.path.join(mask_dir, masks[stem])))
            self.sets.append(set_name)
        if not self.images:
            raise UserError(f'{root}: no usable pretrain image in sets {list(sets)}; expected {PRETRAIN_LAYOUT}')
        check_headers((image, mask) for _, image, mask in self.images)
        self.flip = P.RandomHorizontalFlip(0.3)
        self.jitter = P.ColorJitter(brightness=0.1, contrast=0.1, saturation=0.1, hue=0.03)
        self.affine = P.RandomAffine(degrees=20, translate=(0.1, 0.1), scale=(0.9, 1.1), shear=10)
        self.crop = P.RandomResizedCrop(self.output_size, scale=(0.8, 1.0), ratio=(3 / 4, 4 / 3),
                                        interpolation=InterpolationMode.BILINEAR)

    def __len__(self):
        return len(self.images)

    def _later_frame(self, image, mask):
        return self.affine(*self.jitter(*self.flip(image, mask)))

    def _sample(self, index):
        name, image_path, mask_path = self.images[index]
        pair = load_pair(image_path, mask_path)
        return name, [0] * self.clip_n, [pair] * self.clip_n


@dataclass(frozen=True)
class TrainingLevel:
    """One of train.py's levels: what it trains on, the dataset class that reads it, its clips' defaults."""
    subject: str             # what the level trains on (--level's help)
    dataset_root: str        # what --dataset names
    dataset_class: type
    output_size: int = 400   # side of the square crops (as released)
    clip_n: int = 6          # frames per clip (the released --clip_n)
    obj_n: int = 3           # objects per clip, background included (the released --obj_n)

    def clip_settings(self, output_size=None, clip_n=None, obj_n=None):
        """{'output_size', 'clip_n', 'obj_n'}: the values given, this level's defaults for those that are None."""
        given = {'output_size': output_size, 'clip_n': clip_n, 'obj_n': obj_n}
        return {name: getattr(self, name) if value is None else value for name, value in given.items()}


TRAINING_LEVELS = {
    0: TrainingLevel('pretrain on static images', 'the pretrain folder', PretrainImages),
    1: TrainingLevel('DAVIS 2017', 'DAVIS 2017', DAVISTrain),
    2: TrainingLevel('YouTube-VOS 2018', 'YouTube-VOS 2018 train', YouTubeTrain),
}


def training_level(level):
    """The TrainingLevel numbered `level`, or a UserError that lists them."""
    if level not in TRAINING_LEVELS:
        listed = ', '.join(f'{number} ({entry.subject})' for number, entry in TRAINING_LEVELS.items())
        raise UserError(f'--level {level}: the training levels are {listed}')
    return TRAINING_LEVELS[level]


def training_dataset(level, root, output_size=None, clip_n=None, obj_n=None, **options):
    """The dataset of training level `level` at `root`; clip settings left None are the level's."""
    entry = training_level(level)
    return entry.dataset_class(root, **entry.clip_settings(output_size, clip_n, obj_n), **options)
