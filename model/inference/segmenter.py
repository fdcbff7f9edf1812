"""The Python API: segment your own frames, in one call or step by step.

    from model.inference.segmenter import Segmenter
    segmenter = Segmenter.from_pretrained('davis17', device='cuda')   # or a path / URL; device 'auto' by default
    for labels in segmenter.segment(frames, {0: first_mask}):          # frames: iterable of RGB uint8 (H, W, 3)
        ...                                                            # labels: uint8 (H, W), the masks' label values

    session = segmenter.session()                                      # streaming / interactive use
    labels, probabilities = session.step(frame, mask=first_mask)
    labels, probabilities = session.step(next_frame)

Frames are consumed one at a time (a generator works), so memory does not grow
with the video's length beyond the feature bank's budget. A mask can be given at
any frame: its objects start there, and the bank restarts from that frame (as the
released YouTube-VOS loop does when objects appear).
"""
import numpy as np
import torch

from model.inference.options import DEFAULT_BANK_OPTIONS, BankOptions
from model.inference.precision import DEFAULT_PRECISION, check_precision
from model.inference.propagation import FrameItem, Propagation
from model.network.loading import load_model
from utils.device import select_device
from utils.download import resolve_checkpoint
from utils.errors import UserError
from utils.images import rgb_to_tensor
from utils.masks import required_object_labels


def frame_tensor(frame):
    """A float (3, H, W) tensor in [0, 1] from an RGB uint8 (H, W, 3) array or a float (3, H, W) tensor in [0, 1]."""
    if isinstance(frame, torch.Tensor):
        if frame.dim() != 3 or frame.shape[0] != 3:
            raise UserError(f'a frame tensor must be (3, H, W) RGB, got shape {tuple(frame.shape)}')
        if not frame.is_floating_point():
            raise UserError(f'a frame tensor must be float in [0, 1], got {frame.dtype}; divide by 255, '
                            f'or pass the (H, W, 3) uint8 array')
        low, high = torch.aminmax(frame)
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


class Session:
    """One video, segmented step by step: step(frame, mask=None) -> (labels, probabilities).

    labels: uint8 (H, W) in the masks' own label values. probabilities: float (objects + 1, H, W),
    channel 0 the background and channel c the object `object_labels[c - 1]`; a mask with new
    objects adds channels from its frame on. Before the first mask, every pixel is background.
    """

    def __init__(self, model, options, precision):
        self._loop = Propagation(model, (), options, precision=precision)
        self._index = 0

    @property
    def object_labels(self):
        return self._loop.label_values[1:]

    def step(self, frame, mask=None):
        frame = frame_tensor(frame)
        given, given_labels = None, ()
        if mask is not None:
            given = label_mask(mask, frame.shape[-2:])
            given_labels = tuple(required_object_labels(given, f'the mask of frame {self._index}'))
        output = self._loop.step(FrameItem(self._index, frame, given, given_labels))
        self._index += 1
        if output is None:
            height, width = frame.shape[-2:]
            return np.zeros((height, width), np.uint8), np.ones((1, height, width), np.float32)
        return self._loop.label_map(output), output.probabilities.cpu().numpy()


class Segmenter:
    """A model in eval mode with the feature bank's options and the network's precision; makes Sessions.

    precision: 'fp32' (default, the released numerics; no TF32 on CUDA), 'tf32' (CUDA), 'bf16'
    (CUDA, or a CPU with bfloat16 instructions) or 'fp16' (CUDA): faster, with slightly different results.
    """

    def __init__(self, model, options=DEFAULT_BANK_OPTIONS, precision=DEFAULT_PRECISION):
        self.model = model.eval()
        self.options = options
        self.precision = precision
        check_precision(precision, next(model.parameters()).device)

    @classmethod
    def from_pretrained(cls, checkpoint, device='auto', budget=DEFAULT_BANK_OPTIONS.budget,
                        update_rate=DEFAULT_BANK_OPTIONS.update_rate, merge_thres=DEFAULT_BANK_OPTIONS.merge_thres,
                        precision=DEFAULT_PRECISION):
        """Resolve (a path, an http(s) URL, or 'pretrain' / 'davis17' / 'youtube18'), download once, and load."""
        options = BankOptions(budget, update_rate, merge_thres)
        device = select_device(device, 'device', cpu_choice="device='cpu'")
        check_precision(precision, device)
        return cls(load_model(resolve_checkpoint(checkpoint), device), options, precision)

    def session(self):
        return Session(self.model, self.options, self.precision)

    def segment(self, frames, masks, probabilities=False):
        """Yield each frame's labels (with probabilities=True, (labels, probabilities)); see Session.step.

        `masks`: {frame index: label mask}, or one label mask for the first frame.
        """
        if not isinstance(masks, dict):
            masks = {0: masks}
        session = self.session()
        for t, frame in enumerate(frames):
            labels, probs = session.step(frame, masks.get(t))
            yield (labels, probs) if probabilities else labels
