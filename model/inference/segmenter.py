"""The Python API: segment your own frames, in one call or step by step.

    from model.inference.segmenter import Segmenter
    segmenter = Segmenter.from_pretrained('davis17', device='cuda')   # or a path / URL; device 'auto' by default
    for labels in segmenter.segment(frames, {0: first_mask}):          # frames: iterable of RGB uint8 (H, W, 3)
        ...                                                            # labels: uint8 (H, W), the masks' label values

    session = segmenter.session()                                      # streaming / interactive use
    labels, probabilities = session.step(frame, mask=first_mask)
    labels, probabilities = session.step(next_frame)

Frames are resized so that their shorter side is `size` pixels (480 by default, never enlarged;
size=None: the native size); labels and probabilities come back at each frame's own size.
Frames are consumed one at a time (a generator works), so memory does not grow
with the video's length beyond the feature bank's budget. A mask can be given at
any frame: its objects start there, and the bank restarts from that frame (as the
released YouTube-VOS loop does when objects appear).
"""
import numbers

import numpy as np
import torch
import torch.nn.functional as F

from model.inference.options import DEFAULT_BANK_OPTIONS, WORKING_SIZE, BankOptions, working_size_problem
from model.inference.precision import DEFAULT_PRECISION, check_precision
from model.inference.propagation import FrameItem, Propagation
from model.network.loading import load_model
from utils.device import select_device
from utils.download import resolve_checkpoint
from utils.errors import UserError
from utils.images import at_working_size, rgb_to_tensor
from utils.masks import required_object_labels


def frame_tensor(frame):
    """A float (3, H, W) tensor in [0, 1] from an RGB uint8 (H, W, 3) array or a float (3, H, W) tensor in [0, 1]."""
    if isinstance(frame, torch.Tensor):
        if frame.dim() != 3 or frame.shape[0] != 3:
            raise UserError(f'a frame tensor must be (3, H, W) RGB, got shape {tuple(frame.shape)}')
        if not frame.is_floating_point():
            raise UserError(f'a frame tensor must be float in [0, 1], got {frame.dtype}; divide by 255, '
                            f'or pass the (H, W, 3) uint8 array')
        low, high = torch.aminmax(frame)  # NaN in the frame makes both NaN
        if not (torch.isfinite(low) and torch.isfinite(high)):
            raise UserError(f'a frame tensor holds NaN or infinite values ({low.item():g}..{high.item():g}); '
                            f'give finite values in [0, 1]')
        if low < 0 or high > 1:
            raise UserError(f'a frame tensor must hold values in [0, 1], got {low.item():g}..{high.item():g}; '
                            f'divide 0..255 values by 255')
        return frame.float()
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise UserError(f'a frame array must be RGB uint8 (H, W, 3), got {frame.dtype} {frame.shape}')
    return rgb_to_tensor(frame)


def label_mask(mask, frame_size):
    """A uint8 (H, W) label map from an integer, boolean or integral float (H, W) array or tensor."""
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[2] in (3, 4):
        raise UserError(f'the mask is a colour image {mask.shape}; give an (H, W) label map '
                        f'(0 background, 1..N objects): map each colour to its label')
    if mask.ndim != 2:
        raise UserError(f'a mask must be an (H, W) label map, got shape {mask.shape}')
    if tuple(mask.shape) != tuple(frame_size):
        raise UserError(f'the mask is {mask.shape[1]}x{mask.shape[0]} (WxH) but its frame is '
                        f'{frame_size[1]}x{frame_size[0]}; they must have the same size')
    if mask.dtype == bool:
        return mask.astype(np.uint8)
    if not (np.issubdtype(mask.dtype, np.integer) or np.issubdtype(mask.dtype, np.floating)):
        raise UserError(f'a mask must hold integer labels, got {mask.dtype}')
    if np.issubdtype(mask.dtype, np.floating) and not np.array_equal(mask, np.round(mask)):
        raise UserError('the mask holds non-integer values (a float mask of probabilities?); '
                        'give integer labels: 0 background, 1..N objects')
    if mask.size and (mask.min() < 0 or mask.max() > 255):
        raise UserError(f'the mask holds labels {mask.min():g}..{mask.max():g}; labels must be 0..255 '
                        f'(0 background, 255 void)')
    return mask.astype(np.uint8)


def frame_indexed(masks):
    """{frame index: mask} with int keys; a key that cannot be a frame's index (a string, -1, a float) is refused."""
    indexed = {}
    for key, mask in masks.items():
        if isinstance(key, bool) or not isinstance(key, numbers.Integral) or key < 0:
            raise UserError(f'masks: the key {key!r} is not a frame index; the keys are the indices 0, 1, ... '
                            f'of the frames the masks belong to')
        indexed[int(key)] = mask
    return indexed


def check_masks_within(masks, frame_count):
    """Refuse masks whose frame index is past the last of `frame_count` frames (they would be silently unused)."""
    beyond = sorted(index for index in masks if index >= frame_count)
    if beyond:
        raise UserError(f'masks were given for frames {beyond}, but the frames ended after {frame_count}; '
                        f'check the frame indices of the masks (the first frame is 0)')


def _check_size(size):
    why = None if size is None else working_size_problem(size)
    if why is not None:
        raise UserError(f'size={size!r}: {why}, or None for the native size')


class Session:
    """One video, segmented step by step: step(frame, mask=None) -> (labels, probabilities).

    Both at the frame's own size (H, W), whatever the working size `size` the model runs at.
    labels: uint8 (H, W) in the masks' own label values, the argmax at the working size resized with
    nearest (as eval.py writes them). probabilities: float (objects + 1, H, W), resized bilinearly from
    the working size (so their argmax may differ from labels by a pixel at edges), channel 0 the
    background and channel c the object `object_labels[c - 1]`; a mask with new objects adds channels
    from its frame on. Before the first mask, every pixel is background.
    """

    def __init__(self, model, options, precision, size=WORKING_SIZE):
        self._loop = Propagation(model, (), options, precision=precision)
        self._size = size
        self._index = 0
        self._frame_size = None

    @property
    def object_labels(self):
        return self._loop.label_values[1:]

    def step(self, frame, mask=None, probabilities=True):
        """(labels, probabilities) of the next frame; with probabilities=False, the labels alone."""
        frame = frame_tensor(frame)
        self._check_frame_size(frame.shape[-2:])
        height, width = frame.shape[-2:]
        small, original_size = at_working_size(frame, self._size)
        item = FrameItem(self._index, small, original_size=original_size)
        if mask is not None:
            given = label_mask(mask, (height, width))
            item.give(given, required_object_labels(given, f'the mask of frame {self._index}'))
        output = self._loop.step(item)
        self._index += 1
        if output is None:
            labels, probs = np.zeros((height, width), np.uint8), np.ones((1, height, width), np.float32)
            return (labels, probs) if probabilities else labels
        labels = self._loop.label_map(output, size=original_size)
        if not probabilities:
            return labels
        probs = output.probabilities
        if original_size is not None:
            probs = F.interpolate(probs[None], size=original_size, mode='bilinear', align_corners=False)[0]
        return labels, probs.cpu().numpy()

    def _check_frame_size(self, size):
        if self._frame_size is None:
            self._frame_size = size
        elif size != self._frame_size:
            raise UserError(f'frame {self._index} is {size[1]}x{size[0]} (WxH) but the frames before it are '
                            f'{self._frame_size[1]}x{self._frame_size[0]}; the frames of one video must have one '
                            f'size (start a new session for another video)')


class Segmenter:
    """A model in eval mode with the feature bank's options, the network's precision and the working size;
    makes Sessions.

    precision: 'fp32' (default, the released numerics; no TF32 on CUDA), 'tf32' (CUDA), 'bf16'
    (CUDA, or a CPU with bfloat16 instructions) or 'fp16' (CUDA): faster, with slightly different results.
    size: frames are resized (bilinear) so that their shorter side is `size` pixels, never enlarged
    (default 480, the size the checkpoints were trained at); None: the native size.
    """

    def __init__(self, model, options=DEFAULT_BANK_OPTIONS, precision=DEFAULT_PRECISION, size=WORKING_SIZE):
        self.model = model.eval()
        self.options = options
        self.precision = precision
        check_precision(precision, next(model.parameters()).device)
        _check_size(size)
        self.size = size

    @classmethod
    def from_pretrained(cls, checkpoint, device='auto', budget=DEFAULT_BANK_OPTIONS.budget,
                        update_rate=DEFAULT_BANK_OPTIONS.update_rate, merge_thres=DEFAULT_BANK_OPTIONS.merge_thres,
                        precision=DEFAULT_PRECISION, size=WORKING_SIZE):
        """Resolve (a path, an http(s) URL, or 'pretrain' / 'davis17' / 'youtube18'), download once, and load."""
        options = BankOptions(budget, update_rate, merge_thres)
        device = select_device(device, 'device', cpu_choice="device='cpu'")
        check_precision(precision, device)
        _check_size(size)
        return cls(load_model(resolve_checkpoint(checkpoint), device), options, precision, size)

    def session(self):
        return Session(self.model, self.options, self.precision, self.size)

    def segment(self, frames, masks, probabilities=False):
        """Yield each frame's labels (with probabilities=True, (labels, probabilities)); see Session.step.

        `masks`: {frame index: label mask}, or one label mask for the first frame.
        """
        masks = frame_indexed(masks if isinstance(masks, dict) else {0: masks})
        session = self.session()
        count = 0
        for count, frame in enumerate(frames, 1):
            yield session.step(frame, masks.get(count - 1), probabilities)
        check_masks_within(masks, count)
