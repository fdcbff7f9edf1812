"""What the user gives to propose one object's mask on one frame, checked against that frame.

Coordinates are frame pixels of the image the proposal is made on, at whatever size the app works:
a click (x, y) is the column and row of the pixel clicked (fractions allowed); a box (x0, y0, x1, y1)
runs along pixel edges, x1 and y1 exclusive. Strokes are bool masks of the frame's size, painted as
certainly object or certainly background.
"""
import math
from dataclasses import dataclass, replace

import numpy as np

from utils.errors import UserError

MIN_BOX_SIDE = 4  # pixels; a smaller box holds too few pixels to tell an object from its background


@dataclass(frozen=True)
class Click:
    x: float
    y: float
    on_object: bool  # True: a positive click (this is the object), False: a negative one (this is not)


@dataclass(frozen=True, eq=False)
class Prompt:
    clicks: tuple = ()
    box: tuple | None = None
    object_strokes: np.ndarray | None = None
    background_strokes: np.ndarray | None = None

    @property
    def positive_clicks(self):
        return [click for click in self.clicks if click.on_object]


def _finite(values, what):
    try:
        values = [float(value) for value in values]
    except (TypeError, ValueError):
        values = [math.nan]
    if not all(math.isfinite(value) for value in values):
        raise UserError(f'{what}: every coordinate must be a finite number of pixels')
    return values


def _checked_box(box, height, width):
    if len(box) != 4:
        raise UserError(f'box {tuple(box)}: give x0, y0, x1, y1 in pixels')
    x0, y0, x1, y1 = (int(round(value)) for value in _finite(box, f'box {tuple(box)}'))
    x0, x1 = sorted((max(0, min(x0, width)), max(0, min(x1, width))))
    y0, y1 = sorted((max(0, min(y0, height)), max(0, min(y1, height))))
    if x1 - x0 < MIN_BOX_SIDE or y1 - y0 < MIN_BOX_SIDE:
        raise UserError(f'the box is {x1 - x0}x{y1 - y0} pixels inside the frame; draw one at least '
                        f'{MIN_BOX_SIDE}x{MIN_BOX_SIDE} around the object')
    return x0, y0, x1, y1


def _checked_click(click, height, width):
    x, y = _finite((click.x, click.y), f'click ({click.x}, {click.y})')
    if not (0 <= x < width and 0 <= y < height):
        raise UserError(f'click ({x:g}, {y:g}) is outside the {width}x{height} frame; click on the frame')
    return Click(x, y, bool(click.on_object))


def _checked_strokes(strokes, shape, what):
    if strokes is None:
        return None
    strokes = np.asarray(strokes, bool)
    if strokes.shape != shape:
        raise UserError(f'the {what} strokes are {strokes.shape[-1]}x{strokes.shape[0]} pixels, the frame '
                        f'{shape[1]}x{shape[0]}; paint them on the frame shown')
    return strokes


def checked_prompt(prompt, frame_size):
    """`prompt` for a frame of `frame_size` (H, W): coordinates finite, clicks on the frame, the box clipped to
    it, strokes of its size, and something on the object (a box, a positive click or an object stroke); else
    one UserError saying what to change."""
    height, width = frame_size
    checked = replace(
        prompt,
        clicks=tuple(_checked_click(click, height, width) for click in prompt.clicks),
        box=None if prompt.box is None else _checked_box(tuple(prompt.box), height, width),
        object_strokes=_checked_strokes(prompt.object_strokes, (height, width), 'object'),
        background_strokes=_checked_strokes(prompt.background_strokes, (height, width), 'background'))
    has_object = (checked.box is not None or checked.positive_clicks
                  or (checked.object_strokes is not None and checked.object_strokes.any()))
    if not has_object:
        raise UserError('nothing marks the object: draw a box around it or click on it')
    return checked
