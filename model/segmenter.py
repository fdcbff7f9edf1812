"""The Python API: segment your own frames with a checkpoint.

    from model.segmenter import Segmenter
    segmenter = Segmenter('davis17', device='cuda')         # or a path / URL; device 'auto' by default
    for labels in segmenter.segment(frames, first_mask):    # frames: iterable of RGB uint8 (H, W, 3)
        ...                                                 # labels: uint8 (H, W), the first mask's label values

Frames are consumed one at a time (a generator works), so memory does not grow
with the video's length beyond the feature bank's budget.
"""
import numpy as np
import torch

from dataset.frame_stream import FrameItem, rgb_to_tensor
from model.loading import load_model
from model.propagation import BankOptions, Propagation, object_labels_of
from utils.device import select_device
from utils.download import resolve_checkpoint
from utils.errors import UserError


def frame_tensor(frame):
    """A float (3, H, W) tensor in [0, 1] from an RGB uint8 (H, W, 3) array or a (3, H, W) tensor."""
    if isinstance(frame, torch.Tensor):
        if frame.dim() != 3 or frame.shape[0] != 3:
            raise UserError(f'a frame tensor must be (3, H, W) RGB in [0, 1], got shape {tuple(frame.shape)}')
        return frame.float()
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise UserError(f'a frame array must be RGB uint8 (H, W, 3), got {frame.dtype} {frame.shape}')
    return rgb_to_tensor(frame)


class Segmenter:
    """A model loaded from a checkpoint (path, URL or released name) on a device, with the bank options."""

    def __init__(self, checkpoint, device='auto', budget=300000, update_rate=0.1, merge_thres=0.95):
        self.device = select_device(device, 'device')
        self.model = load_model(resolve_checkpoint(checkpoint), self.device)
        self.options = BankOptions(budget, update_rate, merge_thres)

    def segment(self, frames, first_mask, probabilities=False):
        """Yield each frame's label mask (and, with probabilities=True, (labels, probs (obj_n, H, W) numpy)).

        `first_mask` labels the objects in the first frame (uint8 (H, W), 0 = background);
        the first yielded mask is that mask itself. Channel c of the probabilities is the
        object labelled sorted(labels of first_mask)[c - 1]; channel 0 the background.
        """
        first_mask = np.asarray(first_mask, dtype=np.uint8)
        loop = Propagation(self.model, object_labels_of(first_mask), self.options)
        items = (FrameItem(t, frame_tensor(frame), first_mask if t == 0 else None)
                 for t, frame in enumerate(frames))
        for output in loop.run(items):
            labels = loop.labels(output.probabilities)
            yield (labels, output.probabilities.cpu().numpy()) if probabilities else labels
