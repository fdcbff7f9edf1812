"""Image files and frames: the one image lister, and RGB arrays to and from frame tensors."""
import os

import numpy as np
import torch

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
