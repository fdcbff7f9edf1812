"""Paired training transforms: one RGB PIL image and its label mask, same random parameters.

Each paired transform is called as ``image, mask = transform(image, mask)`` with
`image` a PIL RGB image and `mask` a PIL 'P' (or 'L') label image of the same size.
Random parameters come from torch's RNG (as torchvision's own transforms draw
them); object choice in `to_onehot` uses Python's `random`. Seeding both makes
samples reproducible.

Masks are always resampled with NEAREST, so their pixels stay label ids, and
areas moved in from outside the image are filled with 0 (background).
"""
import random

import numpy as np
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as F
from torchvision.transforms import InterpolationMode

from utils.masks import present_labels

def _pair(value, name):
    """A scalar v becomes (-v, v); a pair stays as it is."""
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f'{name} must be non-negative, got {value}')
        return [-float(value), float(value)]
    value = [float(v) for v in value]
    if len(value) != 2:
        raise ValueError(f'{name} must be a number or a (min, max) pair, got {value}')
    return value


class RandomAffine:
    """torchvision's RandomAffine on an (image, mask) pair, one set of parameters for both.

    `degrees` and `shear` are a number v (meaning -v..v, x-shear only, as
    torchvision reads it) or a (min, max) pair; `translate` is the (x, y) maximal
    fraction; `scale` a (min, max) range. The image uses `interpolation`
    (torchvision's default, NEAREST, as the released code passes it), the mask NEAREST;
    both are filled with `fill` (0) where the transform moves in empty space.
    """

    def __init__(self, degrees, translate=None, scale=None, shear=None,
                 interpolation=InterpolationMode.NEAREST, fill=0):
        self.degrees = _pair(degrees, 'degrees')
        self.translate = None if translate is None else [float(t) for t in translate]
        self.scale = None if scale is None else [float(s) for s in scale]
        self.shear = None if shear is None else _pair(shear, 'shear')
        self.interpolation = interpolation
        self.fill = fill

    def get_params(self, image):
        return T.RandomAffine.get_params(self.degrees, self.translate, self.scale, self.shear,
                                         list(image.size))

    def __call__(self, image, mask):
        angle, translate, scale, shear = self.get_params(image)
        image = F.affine(image, angle, list(translate), scale, list(shear),
                         interpolation=self.interpolation, fill=self.fill)
        mask = F.affine(mask, angle, list(translate), scale, list(shear),
                        interpolation=InterpolationMode.NEAREST, fill=self.fill)
        return image, mask


class RandomHorizontalFlip:
    """Flip both image and mask left-right with probability p."""

    def __init__(self, p=0.5):
        self.p = p

    def __call__(self, image, mask):
        if torch.rand(1).item() < self.p:
            return F.hflip(image), F.hflip(mask)
        return image, mask


class RandomResizedCrop:
    """torchvision's RandomResizedCrop on a pair: the same box, resized to (size, size).

    The image is resized with `interpolation` (BILINEAR), the mask with NEAREST.
    `get_params(image)` returns the (top, left, height, width) box.
    """

    def __init__(self, size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                 interpolation=InterpolationMode.BILINEAR):
        self.size = [size, size] if isinstance(size, int) else list(size)
        self.scale = [float(s) for s in scale]
        self.ratio = [float(r) for r in ratio]
        self.interpolation = interpolation

    def get_params(self, image):
        return T.RandomResizedCrop.get_params(image, self.scale, self.ratio)

    def __call__(self, image, mask):
        top, left, height, width = self.get_params(image)
        image = F.resized_crop(image, top, left, height, width, self.size, self.interpolation)
        mask = F.resized_crop(mask, top, left, height, width, self.size, InterpolationMode.NEAREST)
        return image, mask


class ColorJitter:
    """torchvision's ColorJitter on the image of a pair; the mask passes through."""

    def __init__(self, brightness=0, contrast=0, saturation=0, hue=0):
        self.jitter = T.ColorJitter(brightness, contrast, saturation, hue)

    def __call__(self, image, mask):
        return self.jitter(image), mask


def to_onehot(labels, max_obj_n, obj_list=None, pad=True):
    """One-hot float tensor of a label array, and the object labels it uses.

    Without `obj_list`, up to max_obj_n - 1 object labels are chosen at random
    (Python's `random`, in random order) among the nonzero, non-void labels
    present; with it, those labels are used in that order (absent ones give
    empty channels). Channel 0 is background: every pixel not in a chosen object,
    void and unchosen objects included; channel i is the i-th chosen object.
    Returns (tensor, obj_list) with tensor (max_obj_n, H, W) when `pad`, else
    (len(obj_list) + 1, H, W).
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f'a label mask is (H, W), got shape {labels.shape}')
    if obj_list is None:
        present = present_labels(labels)
        obj_list = random.sample(present, min(len(present), max_obj_n - 1))
    else:
        obj_list = [int(v) for v in obj_list]
        if len(obj_list) > max_obj_n - 1:
            raise ValueError(f'{len(obj_list)} objects given, at most max_obj_n - 1 = {max_obj_n - 1} fit')
    channels = max_obj_n if pad else len(obj_list) + 1
    onehot = np.zeros((channels,) + labels.shape, np.float32)
    onehot[0] = 1
    for i, label in enumerate(obj_list, start=1):
        inside = labels == label
        onehot[i][inside] = 1
        onehot[0][inside] = 0
    return torch.from_numpy(onehot), obj_list
