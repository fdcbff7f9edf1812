"""The inference loop: propagate first-frame masks through a stream of frames.

One loop serves every use: DAVIS and long videos (all objects given on the
first frame), YouTube-VOS (objects may start later, each with its own given
mask), video files and the Python API. Per frame, in the released order:
segment (which counts bank usage) -> yield the probabilities -> memorize the
frame with them -> update the bank (or restart it when new objects start).
"""
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from model.feature_bank import FeatureBank
from model.precision import autocast, check_precision
from utils.errors import UserError

# Scores forced onto objects that have not started yet, and onto newly given masks.
FORCED_SCORE = 1000.0
# More objects than this in one video is almost surely a mask that is not a label map.
MAX_OBJECTS = 64


@dataclass
class BankOptions:
    budget: int = 300000
    update_rate: float = 0.1
    merge_thres: float = 0.95


@dataclass
class FrameOutput:
    """The loop's result for one frame: the (forced) scores and their softmax over objects.

    `scores` is None on the frame whose given mask starts the video.
    """
    item: object                         # the dataset.frame_stream.FrameItem it came from
    probabilities: torch.Tensor          # (obj_n, h, w)
    scores: torch.Tensor | None = None   # (obj_n, h, w) logits


def object_labels_of(mask, source='the first-frame mask'):
    """The object label values (sorted, without 0 and void 255) of a label mask."""
    labels = [int(v) for v in np.unique(mask) if v not in (0, 255)]
    if len(labels) > MAX_OBJECTS:
        raise UserError(f'{source} has {len(labels)} labels, more than {MAX_OBJECTS}: '
                        f'is it a colour or grey image instead of a label mask (0 = background, 1..N objects)?')
    return labels


def _with_lookahead(items):
    """Yield (item, is_last) pairs, reading one item ahead."""
    iterator = iter(items)
    try:
        current = next(iterator)
    except StopIteration:
        return
    for following in iterator:
        yield current, False
        current = following
    yield current, True


class Propagation:
    """Segments one video. `object_labels` are the label values of the objects, in channel order.

    Channel 0 is the background; channel c is the object labelled object_labels[c - 1].
    `run` takes FrameItems (dataset.frame_stream): .index, .frame (3, h, w) in [0, 1] and
    .given, the label mask of objects starting at that frame (or None).
    `run` yields a FrameOutput for the first given frame and every frame after it; `bank` is the feature bank, inspectable between yields.
    `precision` ('fp32', 'bf16' or 'fp16', see model.precision) is the network's arithmetic;
    the bank, scores and probabilities keep the model's own dtype.
    """

    def __init__(self, model, object_labels, options=BankOptions(), precision='fp32'):
        self.model = model
        parameter = next(model.parameters())
        self.device, self.dtype = parameter.device, parameter.dtype
        self.label_values = [0] + list(object_labels)
        self.options = options
        check_precision(precision, self.device)
        self.precision = precision
        self.bank = None

    @property
    def obj_n(self):
        return len(self.label_values)

    def labels(self, probabilities, size=None):
        """Argmax label map (uint8 numpy) in the objects' own label values, resized (nearest) to `size`."""
        channels = probabilities.argmax(dim=0)
        if size is not None and tuple(size) != tuple(channels.shape):
            channels = F.interpolate(channels[None, None].float(), size=tuple(size), mode='nearest')[0, 0].long()
        lookup = torch.tensor(self.label_values, dtype=torch.uint8, device=channels.device)
        return lookup[channels].cpu().numpy()

    def _given_channels(self, given, index):
        """Per-object boolean masks (obj_n, h, w) of the objects a given label mask starts."""
        given = torch.from_numpy(np.asarray(given)).to(self.device)
        unknown = set(int(v) for v in torch.unique(given).tolist()) - set(self.label_values) - {255}
        if unknown:
            raise UserError(f'frame {index}: given mask has labels {sorted(unknown)} that are not among '
                            f'the video\'s objects {self.label_values[1:]}')
        return torch.stack([given == v for v in self.label_values]) & (torch.arange(self.obj_n, device=self.device) > 0)[:, None, None]

    def _segment(self, frame):
        with autocast(self.precision, self.device):
            scores = self.model.segment(frame, self.bank)[0][0]
        return scores.to(self.dtype)

    def _memorize(self, frame, probabilities):
        with autocast(self.precision, self.device):
            keys, values = self.model.memorize(frame, probabilities.unsqueeze(0))
        return keys.to(self.dtype), values.to(self.dtype)

    @torch.no_grad()
    def run(self, items):
        self.model.eval()
        options = self.options
        started = None
        for item, is_last in _with_lookahead(items):
            frame = item.frame.to(self.device).unsqueeze(0)
            if started is None:
                if item.given is None:
                    continue  # no object has started yet
                regions = self._given_channels(item.given, item.index)
                probabilities = regions.float()
                probabilities[0] = 1 - probabilities[1:].sum(dim=0)
                started = regions.flatten(1).any(dim=1)
                started[0] = True
                self.bank = FeatureBank(self.obj_n, options.budget, options.update_rate, options.merge_thres)
                yield FrameOutput(item, probabilities)
                if not is_last:
                    self.bank.init(*self._memorize(frame, probabilities), item.index)
                continue

            scores = self._segment(frame)
            starting = None
            if item.given is not None:
                regions = self._given_channels(item.given, item.index)
                starting = regions.flatten(1).any(dim=1) & ~started
            restart = starting is not None and bool(starting.any())
            waiting = ~started & ~starting if restart else ~started
            scores.masked_fill_(waiting[:, None, None], -FORCED_SCORE)  # no host sync, unlike indexing
            if restart:
                scores[starting] = -FORCED_SCORE
                new_region = regions[starting].any(dim=0)
                scores[:, new_region] = -FORCED_SCORE
                for c in starting.nonzero()[:, 0].tolist():
                    scores[c][regions[c]] = FORCED_SCORE
                started |= starting
            probabilities = torch.softmax(scores, dim=0)
            yield FrameOutput(item, probabilities, scores)
            if restart:
                self.bank.init(*self._memorize(frame, probabilities), item.index)
            elif not is_last:
                self.bank.update(*self._memorize(frame, probabilities), item.index)
