"""Image files and frames: the one image lister, RGB arrays to and from frame tensors, and the working size."""
import os

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png')


def list_images(folder, extensions=IMAGE_EXTENSIONS):
    """Sorted names of the visible files in `folder` whose extension (any case) is one of `extensions`."""
    return sorted(name for name in os.listdir(folder)
                  if not name.startswith('.') and os.path.splitext(name)[1].lower() in extensions
                  and os.path.isfile(os.path.join(folder, name)))


def rgb_to_tensor(rgb):
    """A uint8 (H, W, 3) RGB array as float (3, H, W) in [0, 1], as torchvision's to_tensor gives."""
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).contiguous().float().div(255)


def tensor_to_rgb(frame):
    """uint8 (H, W, 3) of a float (3, H, W) tensor in [0, 1] (exact inverse of rgb_to_tensor)."""
    return frame.detach().mul(255).round().clamp(0, 255).byte().permute(1, 2, 0).cpu().numpy()


def working_size(height, width, size):
    """(h, w) of a (height, width) frame brought to the working size `size`: the shorter side becomes `size`, the
    longer one keeps the aspect (rounded); a frame no larger is kept as it is (never enlarged), so is any with
    size None."""
    shorter = min(height, width)
    if size is None or shorter <= size:
        return height, width
    if height == shorter:
        return size, round(width * size / height)
    return round(height * size / width), size


def at_working_size(frame, given, size):
    """(frame, given, original (H, W) or None when unchanged) with the float (3, H, W) `frame` resized to
    working_size (bilinear, antialiased) and the uint8 (H, W) label mask `given` (or None) with nearest."""
    height, width = frame.shape[-2:]
    new_height, new_width = working_size(height, width, size)
    if (new_height, new_width) == (height, width):
        return frame, given, None
    frame = F.interpolate(frame[None], size=(new_height, new_width), mode='bilinear', align_corners=False,
                          antialias=True)[0]
    if given is not None:
        given = np.array(Image.fromarray(given).resize((new_width, new_height), Image.NEAREST), np.uint8)
    return frame, given, (height, width)
