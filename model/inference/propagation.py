"""The inference loop: propagate given masks through a stream of frames.

One loop serves every use: DAVIS and long videos (all objects given on the first
frame), YouTube-VOS (objects start later, each with its own given mask), video
files and the Python API (masks at any frame). Per frame, in the released order:
segment (which counts bank usage) -> memorize the frame with its probabilities ->
update the bank, or restart it from this frame when masks were given here.

A frame is memorized when the next frame arrives, so the last frame of a stream
never enters the bank (as released) without the loop having to know the length.
"""
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from model.inference.feature_bank import FeatureBank
from model.inference.options import DEFAULT_BANK_OPTIONS
from model.inference.precision import DEFAULT_PRECISION, network_precision
from utils.images import resize_labels

# Scores forced onto objects that have not started yet, and onto given masks.
FORCED_SCORE = 1000.0


@dataclass
class FrameItem:
    """One frame entering the loop, from any reader."""
    index: int
    frame: torch.Tensor                        # float (3, h, w) in [0, 1]
    given: np.ndarray | None = None            # uint8 (h, w) label mask of the objects given at this frame
    given_labels: tuple[int, ...] = ()         # the labels `given` gives (they start here, even if empty)
    name: str = ''                             # output name (file stem)
    original_size: tuple[int, int] | None = None   # (H, W) before resizing; None: not resized
    original_given: np.ndarray | None = None   # `given` as drawn, when the frame was resized after drawing

    def give(self, mask, labels):
        """Give the uint8 label mask `mask` for the objects `labels`, drawn on the frame before any resizing:
        the loop gets it at the frame's size (nearest), the written labels keep it as drawn."""
        self.given_labels = tuple(labels)
        working = tuple(self.frame.shape[-2:])
        if mask.shape == working:
            self.given = mask
        else:
            self.given, self.original_given = resize_labels(mask, working), mask


@dataclass
class FrameOutput:
    """The loop's result for one frame: scores (given masks forced) and their softmax over objects."""
    item: FrameItem
    scores: torch.Tensor          # (obj_n, h, w) logits; channel 0 background, c the label label_values[c]
    probabilities: torch.Tensor   # (obj_n, h, w)


@dataclass
class PendingFrame:
    """A segmented frame waiting to be memorized, which happens when the next frame arrives."""
    frame: torch.Tensor           # (1, 3, h, w) on the model's device
    probabilities: torch.Tensor   # (obj_n, h, w)
    index: int
    restart: bool                 # masks were given at this frame: the bank restarts from it


class Propagation:
    """Segments one video.

    `object_labels` are channels that exist from the start, in order (YouTube-VOS:
    every id up to the video's largest, as released); a given mask's labels that are
    not among them get new channels when they start. `update_before`: only frames
    with a smaller index update the bank (the released long-video loop stops two
    frames before the end); None: every frame but the last. `precision` (one of
    model.inference.precision.PRECISIONS, checked by the caller with check_precision) is the
    network's arithmetic; the bank, scores and probabilities keep the model's own dtype.
    """

    def __init__(self, model, object_labels=(), options=DEFAULT_BANK_OPTIONS, update_before=None,
                 precision=DEFAULT_PRECISION):
        self.model = model.eval()
        parameter = next(model.parameters())
        self.device, self.dtype = parameter.device, parameter.dtype
        self.precision = precision
        self.label_values = [0, *object_labels]
        self.options = options
        self.update_before = update_before
        self.bank = None
        self._started = {0}          # labels whose objects have started (the background always has)
        self._pending = None         # the previous frame, memorized when this one arrives

    @property
    def obj_n(self):
        return len(self.label_values)

    def label_map(self, output, size=None):
        """uint8 numpy label map of a FrameOutput: the argmax of its scores, resized (nearest) to `size`.

        At a frame whose given mask a working size shrank (`original_given`), the given objects come back as
        drawn, not as their working-size copy scaled back up: a user's own annotation is written unchanged.
        """
        channels = output.scores.argmax(dim=0)
        if size is not None and tuple(size) != tuple(channels.shape):
            channels = F.interpolate(channels[None, None].float(), size=tuple(size), mode='nearest')[0, 0].long()
        lookup = torch.tensor(self.label_values, dtype=torch.uint8, device=channels.device)
        labels = lookup[channels].cpu().numpy()
        given = output.item.original_given
        if given is not None and given.shape == labels.shape:
            drawn = np.isin(given, output.item.given_labels)
            labels[np.isin(labels, output.item.given_labels)] = 0
            labels[drawn] = given[drawn]
        return labels

    def run(self, items):
        """Yield a FrameOutput for every item from the first that gives a mask on."""
        for item in items:
            output = self.step(item)
            if output is not None:
                yield output

    @torch.no_grad()
    def step(self, item):
        """Segment one frame; None while no object has started."""
        self._memorize_previous()
        given_labels = tuple(item.given_labels)
        if self.bank is None and not given_labels:
            return None
        frame = item.frame.to(self.device).unsqueeze(0)
        new_labels = [label for label in given_labels if label not in self.label_values]
        self.label_values += new_labels
        if self.bank is None:
            scores = torch.zeros(self.obj_n, *frame.shape[-2:], dtype=self.dtype, device=self.device)
        else:
            scores = self._segment(frame)
            if new_labels:
                scores = torch.cat([scores, scores.new_zeros(len(new_labels), *scores.shape[-2:])])
        self._started.update(given_labels)
        waiting = [c for c, label in enumerate(self.label_values) if label not in self._started]
        scores[waiting] = -FORCED_SCORE
        if given_labels:
            self._force_given(scores, item.given, given_labels)
        probabilities = torch.softmax(scores, dim=0)
        self._pending = PendingFrame(frame, probabilities, item.index, restart=bool(given_labels))
        return FrameOutput(item, scores, probabilities)

    def _force_given(self, scores, given_mask, given_labels):
        """Each given object gets +FORCED inside its mask and -FORCED elsewhere; every other object
        gets -FORCED inside the given masks."""
        mask = torch.from_numpy(np.asarray(given_mask)).to(self.device)
        regions = {label: mask == label for label in given_labels}
        inside = torch.stack(list(regions.values())).any(dim=0)
        scores[:, inside] = -FORCED_SCORE
        for label, region in regions.items():
            channel = scores[self.label_values.index(label)]
            channel.fill_(-FORCED_SCORE)
            channel[region] = FORCED_SCORE

    def _segment(self, frame):
        with network_precision(self.precision, self.device):
            scores = self.model.segment(frame, self.bank)[0][0]
        return scores.to(self.dtype)

    def _memorize(self, frame, probabilities):
        with network_precision(self.precision, self.device):
            keys, values = self.model.memorize(frame, probabilities.unsqueeze(0))
        return keys.to(self.dtype), values.to(self.dtype)

    def _memorize_previous(self):
        """Memorize the previous frame: restart the bank when masks were given there, else update it."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        if pending.restart:
            if self.bank is None or self.bank.obj_n != self.obj_n:
                self.bank = FeatureBank(self.obj_n, self.options)
            self.bank.init(*self._memorize(pending.frame, pending.probabilities), pending.index)
        elif self.update_before is None or pending.index < self.update_before:
            self.bank.update(*self._memorize(pending.frame, pending.probabilities), pending.index)
