"""The AFB-URR network: memorize frames into a feature bank, segment frames against it."""
import math

import torch
from torch import nn

from model.network.decoder import Decoder, uncertainty_map
from model.network.encoders import MemoryEncoder, QueryEncoder
from model.network.matcher import KeyValue, global_match
from utils.allocator import keep_freed_memory
from utils.padding import crop_padding, pad_to_multiple

# Every user of the network (eval.py, train.py, the API) imports this module: from here on
# large tensors reuse the process's memory instead of being mapped afresh for every frame.
keep_freed_memory()

PROBABILITY_EPS = 1e-7


def _inference_layout(images):
    """Channels-last images: oneDNN's (and cuDNN's) fast convolution layout, kept by every layer after."""
    return images.contiguous(memory_format=torch.channels_last)


class AFBURR(nn.Module):
    """Submodule names (encoder_m, encoder_q, keyval_r4, decoder) match the released checkpoints."""

    def __init__(self):
        super().__init__()
        self.encoder_m = MemoryEncoder()
        self.encoder_q = QueryEncoder()
        self.keyval_r4 = KeyValue()
        self.decoder = Decoder()

    def memorize(self, frame, masks):
        """frame (1, 3, H, W) in [0, 1]; masks (1, obj_n, H, W) soft masks, background included.

        Returns keys (obj_n, 128, hw) and values (obj_n, 512, hw) at 1/16 of the padded size.
        """
        (frame, masks), _ = pad_to_multiple([frame, masks])
        if not self.training:
            frame = _inference_layout(frame)
        masks = masks[0].unsqueeze(1).to(frame.dtype)
        keys, values = self.keyval_r4(self.encoder_m(frame, masks, (1 - masks).clamp(0, 1)))
        return keys.flatten(2), values.flatten(2)

    def segment(self, frames, bank):
        """frames (bs, 3, H, W) in [0, 1] against a FeatureBank.

        Returns scores (bs, obj_n, H, W), each object's foreground logit, and in
        training mode the uncertainty term of the loss (else None). At inference
        the frame is padded to a multiple of 16 and the bank's usage is counted.
        """
        padding = None
        if not self.training:
            (frames,), padding = pad_to_multiple([frames])
            frames = _inference_layout(frames)
        r4, r3, r2, r1 = self.encoder_q(frames)
        keys, values = self.keyval_r4(r4)
        readout = global_match(bank, keys.flatten(2), count_usage=not self.training)
        readout = readout.flatten(0, 1).unflatten(-1, values.shape[-2:])
        if not self.training:
            readout = _inference_layout(readout)
        probabilities = self.decoder(readout, values, r3, r2, r1)

        uncertainty = None
        if self.training:
            u = uncertainty_map(torch.softmax(probabilities, dim=1)).flatten(1)
            uncertainty = (u.norm(p=2, dim=1) / math.sqrt(frames.shape[-2] * frames.shape[-1])).mean()

        probabilities = probabilities.clamp(PROBABILITY_EPS, 1 - PROBABILITY_EPS)
        scores = torch.log(probabilities / (1 - probabilities))
        if padding is not None:
            scores = crop_padding(scores, padding)
        return scores, uncertainty
