"""Image files and frames: the one image lister (natural order), the one opener (size checked from the header
before decoding), the one RGB reader, RGB arrays to and from frame tensors, and the working size."""
import contextlib
import os
import re
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from utils.errors import UserError

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png')
# 8192x8192: an 8K frame fits; a larger image (or a forged header) would take gigabytes to decode.
MAX_IMAGE_PIXELS = 8192 * 8192
_DIGITS = re.compile(r'(\d+)', re.ASCII)


def natural_key(name):
    """Sort key that orders the numbers in names as numbers ('5.jpg' before '10.jpg'); zero-padded names of one
    length keep their plain string order, and names equal as numbers ('01', '1') fall back to it."""
    parts = _DIGITS.split(name)
    return [int(part) if i % 2 else part for i, part in enumerate(parts)], name


def natural_sorted(names):
    return sorted(names, key=natural_key)


def list_images(folder, extensions=IMAGE_EXTENSIONS):
    """Names of the visible files in `folder` whose extension (any case) is one of `extensions`, in natural
    order (natural_key)."""
    return natural_sorted(name for name in os.listdir(folder)
                          if not name.startswith('.') and os.path.splitext(name)[1].lower() in extensions
                          and os.path.isfile(os.path.join(folder, name)))


class ImageTooLarge(UserError):
    """An image over MAX_IMAGE_PIXELS, found from its header."""


def _too_large(path, what, size):
    return ImageTooLarge(f'{path}: {what} too large ({size}); images up to {MAX_IMAGE_PIXELS} pixels (8192x8192) '
                         f'are read: scale it down')


def check_pixel_count(path, what, width, height):
    """Refuse (UserError naming `path` as `what`) an image or frame of more than MAX_IMAGE_PIXELS."""
    if width * height > MAX_IMAGE_PIXELS:
        raise _too_large(path, what, f'{width}x{height}')


@contextlib.contextmanager
def opened_image(path, what):
    """The Pillow image at `path` with only its header read; a missing or unreadable file, or one over
    MAX_IMAGE_PIXELS (ImageTooLarge), is a UserError naming it as `what`, before any pixel is decoded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('error', Image.DecompressionBombWarning)  # Pillow warns, then decodes
            image = Image.open(path)
    except FileNotFoundError:
        raise UserError(f'{path}: {what} not found') from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _too_large(path, what, f'over {Image.MAX_IMAGE_PIXELS} pixels') from None
    except (OSError, ValueError, SyntaxError) as error:
        raise UserError(f'{path}: cannot read {what} ({error})') from None
    with image:
        check_pixel_count(path, what, *image.size)
        try:
            yield image
        except (OSError, ValueError, SyntaxError) as error:  # raised while decoding: a truncated or corrupt file
            raise UserError(f'{path}: cannot read {what} ({error})') from None


def read_rgb(path, what='frame image'):
    """The image at `path` as a PIL RGB image. 16-bit grey is scaled to 8 bits (Pillow's own conversion would
    clip it to white)."""
    with opened_image(path, what) as image:
        if image.mode.startswith('I'):
            values = np.asarray(image)
            if values.min(initial=0) < 0 or values.max(initial=0) > 65535:
                raise UserError(f'{path}: {what} holds values outside 0..65535; save it as 8-bit RGB or grey')
            grey = np.round(values / 257.0).astype(np.uint8)
            return Image.fromarray(grey, 'L').convert('RGB')
        return image.convert('RGB')


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


def resize_labels(labels, size):
    """A uint8 (H, W) label mask resized to (h, w) `size` with nearest, so labels stay labels."""
    height, width = size
    return np.array(Image.fromarray(labels).resize((width, height), Image.NEAREST), np.uint8)


def at_working_size(frame, size):
    """(frame, original (H, W) or None when unchanged) with the float (3, H, W) `frame` resized to working_size
    (bilinear, antialiased); a label mask given for it follows with FrameItem.give."""
    height, width = frame.shape[-2:]
    new_height, new_width = working_size(height, width, size)
    if (new_height, new_width) == (height, width):
        return frame, None
    frame = F.interpolate(frame[None], size=(new_height, new_width), mode='bilinear', align_corners=False,
                          antialias=True)[0]
    return frame, (height, width)
