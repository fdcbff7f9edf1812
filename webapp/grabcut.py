"""A proposed object mask from a box drawn around it: OpenCV's GrabCut, initialised with the box."""
import cv2
import numpy as np

from utils.errors import UserError

MIN_BOX_SIDE = 4  # pixels; GrabCut needs some background inside the image and some pixels in the box
ITERATIONS = 5


def box_mask(image_rgb, box):
    """bool (H, W): GrabCut's foreground for the object inside `box` (x0, y0, x1, y1), pixel edges, x1/y1
    exclusive; every pixel outside the box is background."""
    image = np.ascontiguousarray(image_rgb, dtype=np.uint8)
    height, width = image.shape[:2]
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    x0, x1 = sorted((max(0, min(x0, width)), max(0, min(x1, width))))
    y0, y1 = sorted((max(0, min(y0, height)), max(0, min(y1, height))))
    if x1 - x0 < MIN_BOX_SIDE or y1 - y0 < MIN_BOX_SIDE:
        raise UserError(f'the box is {x1 - x0}x{y1 - y0} pixels inside the frame; draw one at least '
                        f'{MIN_BOX_SIDE}x{MIN_BOX_SIDE} around the object')
    if (x1 - x0) * (y1 - y0) == width * height:
        return np.ones((height, width), bool)  # a box over the whole frame leaves GrabCut no background
    labels = np.zeros((height, width), np.uint8)
    background, foreground = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)  # GrabCut's colour models start from k-means: the same box gives the same mask
    cv2.grabCut(cv2.cvtColor(image, cv2.COLOR_RGB2BGR), labels, (x0, y0, x1 - x0, y1 - y0), background,
                foreground, ITERATIONS, cv2.GC_INIT_WITH_RECT)
    return (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)
