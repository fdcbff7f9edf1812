"""Visualisation: object masks blended over the frame with a black outline.

Inside each object (label > 0) the pixel becomes round(0.6 * image + 0.4 * colour),
colour = utils.palette.PALETTE[label]. The contour is a morphological inner
boundary, 1 pixel wide: every object pixel with a 4-neighbour (up, down, left,
right, inside the image) of a different label is painted black. So the outline
lies on the object's own outermost pixels (including around holes and where two
objects touch, on both sides); the image border itself is not outlined.
"""
import numpy as np

from utils.palette import PALETTE

ALPHA = 0.4
_COLOURS = np.array(PALETTE, dtype=np.float32)


def object_boundary(labels):
    """bool (H, W): object pixels (label > 0) with a 4-neighbour of another label."""
    labels = np.asarray(labels)
    edge = np.zeros(labels.shape, bool)
    vertical = labels[1:, :] != labels[:-1, :]
    horizontal = labels[:, 1:] != labels[:, :-1]
    edge[1:, :] |= vertical
    edge[:-1, :] |= vertical
    edge[:, 1:] |= horizontal
    edge[:, :-1] |= horizontal
    return edge & (labels > 0)


def overlay(image_rgb, labels, alpha=ALPHA):
    """uint8 (H, W, 3): palette colours blended (alpha 0.4) inside objects, black 1-pixel contours."""
    image = np.asarray(image_rgb)
    labels = np.asarray(labels)
    if image.ndim != 3 or image.shape[2] != 3 or labels.shape != image.shape[:2]:
        raise ValueError(f'overlay needs an (H, W, 3) image and (H, W) labels, got {image.shape} and {labels.shape}')
    out = image.astype(np.uint8).copy()
    inside = labels > 0
    if inside.any():
        blended = (1 - alpha) * image[inside].astype(np.float32) + alpha * _COLOURS[labels[inside].astype(np.intp)]
        out[inside] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
        out[object_boundary(labels)] = 0
    return out

