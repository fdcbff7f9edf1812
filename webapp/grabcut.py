"""Proposed object masks from OpenCV's GrabCut: the box, clicks and strokes of a prompt as its seeds.

GrabCut starts from a label per pixel (GC_INIT_WITH_MASK): inside the box 'probably object', around it
'background'; positive clicks and object strokes 'object', negative clicks and background strokes
'background', which it never changes. Without a box the whole frame starts as 'probably background' and
the object grows from the positive clicks and strokes. It works on a crop around the box (the box and a
margin of background), scaled down to at most WORK_PIXELS pixels, so that a box on a large frame answers
about as fast as on a small one; its answer is scaled back up and the strokes are kept exactly.
"""
import math

import cv2
import numpy as np

from webapp.prompts import Prompt, checked_prompt

NAME = 'GrabCut'
ITERATIONS = 5
WORK_PIXELS = 120_000   # about 350x350: the crop GrabCut works on is scaled down to this many pixels
MARGIN = 0.2            # of the box's longer side: the background around the box that GrabCut learns from
MIN_MARGIN = 8          # pixels
SEED_RADIUS = 3         # pixels of the scaled crop: a click marks a disc this wide as certain
COLOUR_TOLERANCE = 30   # RGB distance: the region of a click's colour around it is probably the same


class GrabCutProposer:
    """Proposals without a model (webapp.click_model has the other proposer, with the same methods)."""
    name = NAME

    def propose(self, image_rgb, prompt, frame_key=None):
        """bool (H, W) of `image_rgb` (H, W, 3): the object `prompt` marks; `frame_key` is unused (nothing is
        kept between calls)."""
        return prompt_mask(image_rgb, prompt)


def box_mask(image_rgb, box):
    """bool (H, W): GrabCut's object inside `box` (x0, y0, x1, y1); every pixel outside the box is background."""
    return prompt_mask(image_rgb, Prompt(box=tuple(box)))


def _object_box(prompt):
    """The box, grown to hold the positive clicks and the object strokes (each is object); None without a box."""
    if prompt.box is None:
        return None
    x0, y0, x1, y1 = prompt.box
    xs = [int(click.x) for click in prompt.positive_clicks]
    ys = [int(click.y) for click in prompt.positive_clicks]
    if prompt.object_strokes is not None and prompt.object_strokes.any():
        rows, columns = np.nonzero(prompt.object_strokes)
        xs += [columns.min(), columns.max()]
        ys += [rows.min(), rows.max()]
    if xs:
        x0, x1 = min(x0, min(xs)), max(x1, max(xs) + 1)
        y0, y1 = min(y0, min(ys)), max(y1, max(ys) + 1)
    return x0, y0, x1, y1


def _work_region(box, height, width):
    """(x0, y0, x1, y1) of the crop GrabCut works on: the box and a margin around it, or the whole frame."""
    if box is None:
        return 0, 0, width, height
    x0, y0, x1, y1 = box
    margin = max(MIN_MARGIN, int(MARGIN * max(x1 - x0, y1 - y0)))
    return max(0, x0 - margin), max(0, y0 - margin), min(width, x1 + margin), min(height, y1 + margin)


def _scaled_strokes(strokes, size):
    """bool strokes of a crop scaled to `size` (w, h): a work pixel is a stroke when any frame pixel in it is."""
    if strokes.shape[::-1] == size:
        return strokes
    return cv2.resize(strokes.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0


def _similar_region(smooth, disc, centre):
    """bool: the pixels joined to `centre` whose (smoothed) colour is within COLOUR_TOLERANCE of the disc's mean."""
    near = np.linalg.norm(smooth - smooth[disc].mean(axis=0), axis=2) < COLOUR_TOLERANCE
    _, components = cv2.connectedComponents(near.astype(np.uint8), connectivity=4)
    return (components == components[centre[1], centre[0]]) & near


def _seed_labels(work, prompt, box, region, scale):
    """GrabCut's starting label of each pixel of the work image (the crop `region` scaled by `scale` (x, y))."""
    rx0, ry0, rx1, ry1 = region
    height, width = work.shape[:2]
    sx, sy = scale
    if box is None:
        labels = np.full((height, width), cv2.GC_PR_BGD, np.uint8)
    else:
        labels = np.full((height, width), cv2.GC_BGD, np.uint8)
        labels[math.floor((box[1] - ry0) * sy):math.ceil((box[3] - ry0) * sy),
               math.floor((box[0] - rx0) * sx):math.ceil((box[2] - rx0) * sx)] = cv2.GC_PR_FGD
    for strokes, label in ((prompt.object_strokes, cv2.GC_FGD), (prompt.background_strokes, cv2.GC_BGD)):
        if strokes is not None:
            labels[_scaled_strokes(strokes[ry0:ry1, rx0:rx1], (width, height))] = label
    clicks = [click for click in prompt.clicks if rx0 <= click.x < rx1 and ry0 <= click.y < ry1]
    smooth = cv2.GaussianBlur(work, (5, 5), 0).astype(np.float32) if clicks else None
    for click in clicks:
        centre = (min(width - 1, int((click.x - rx0 + 0.5) * sx)), min(height - 1, int((click.y - ry0 + 0.5) * sy)))
        disc = np.zeros((height, width), np.uint8)
        cv2.circle(disc, centre, SEED_RADIUS, 1, -1)
        disc = disc.astype(bool)
        maybe, sure = (cv2.GC_PR_FGD, cv2.GC_FGD) if click.on_object else (cv2.GC_PR_BGD, cv2.GC_BGD)
        undecided = (labels == cv2.GC_PR_FGD) | (labels == cv2.GC_PR_BGD)
        labels[_similar_region(smooth, disc, centre) & undecided] = maybe
        labels[disc] = sure
    return labels


def prompt_mask(image_rgb, prompt):
    """bool (H, W): GrabCut's answer to `prompt` (webapp.prompts) on `image_rgb` (H, W, 3)."""
    image = np.ascontiguousarray(image_rgb, dtype=np.uint8)
    height, width = image.shape[:2]
    prompt = checked_prompt(prompt, (height, width))
    box = _object_box(prompt)
    region = rx0, ry0, rx1, ry1 = _work_region(box, height, width)
    crop_w, crop_h = rx1 - rx0, ry1 - ry0
    shrink = min(1.0, math.sqrt(WORK_PIXELS / (crop_w * crop_h)))
    size = (max(1, round(crop_w * shrink)), max(1, round(crop_h * shrink)))  # (w, h) of the work image
    crop = image[ry0:ry1, rx0:rx1]
    work = crop if shrink == 1 else cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
    labels = _seed_labels(work, prompt, box, region, (size[0] / crop_w, size[1] / crop_h))

    is_object = (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)
    if is_object.any() and not is_object.all():  # GrabCut models both: it needs pixels of each to start
        background, foreground = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        cv2.setRNGSeed(0)  # its colour models start from k-means: the same prompt gives the same mask
        cv2.grabCut(cv2.cvtColor(work, cv2.COLOR_RGB2BGR), labels, None, background, foreground, ITERATIONS,
                    cv2.GC_INIT_WITH_MASK)
        is_object = (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)
    if shrink < 1:
        is_object = cv2.resize(is_object.astype(np.float32), (crop_w, crop_h), interpolation=cv2.INTER_LINEAR) >= 0.5
    mask = np.zeros((height, width), bool)
    mask[ry0:ry1, rx0:rx1] = is_object
    if box is not None:
        inside = np.zeros_like(mask)
        inside[box[1]:box[3], box[0]:box[2]] = True
        mask &= inside
    if prompt.object_strokes is not None:
        mask |= prompt.object_strokes
    if prompt.background_strokes is not None:
        mask &= ~prompt.background_strokes
    return mask
