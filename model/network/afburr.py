"""The AFB-URR network: memorize frames into a feature bank, segment frames against it."""
import math

import torch
from torch import nn

from model.network.decoder import Decoder, uncertainty_map
from model.network.encoders import MemoryEncoder, QueryEncoder
from model.network.matcher import KeyValue, global_match
from utils.padding import crop_padding, pad_to_multiple

PROBABILITY_EPS = 1e-7


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
        obj_n = masks.shape[1]
        masks = masks[0].unsqueeze(1).to(frame.dtype)
        r4, _ = self.encoder_m(frame.expand(obj_n, -1, -1, -1), masks, (1 - masks).clamp(0, 1))
        return self.keyval_r4(r4)

    def segment(self, frames, bank):
        """frames (bs, 3, H, W) in [0, 1] against a FeatureBank.

        Returns scores (bs, obj_n, H, W), each object's foreground logit, and in
        training mode the uncertainty term of the loss (else None). At inference
        the frame is padded to a multiple of 16 and the bank's usage is counted.
        """
        obj_n = bank.obj_n
        padding = None
        if not self.training:
            (frames,), padding = pad_to_multiple([frames])
        r4, r3, r2, r1 = self.encoder_q(frames)
        bs, _, h16, w16 = r4.shape
        keys, values = self.keyval_r4(r4)
        matched = global_match(bank, keys, values, count_usage=not self.training)
        matched = matched.reshape(bs * obj_n, -1, h16, w16)
        per_object = [f.unsqueeze(1).expand(-1, obj_n, -1, -1, -1).reshape(bs * obj_n, *f.shape[1:])
                      for f in (r3, r2, r1)]
        probabilities = self.decoder(matched, *per_object, bs, obj_n).view(bs, obj_n, *frames.shape[-2:])

        uncertainty = None
        if self.training:
            u = uncertainty_map(torch.softmax(probabilities, dim=1)).view(bs, -1)
            uncertainty = (u.norm(p=2, dim=1) / math.sqrt(frames.shape[-2] * frames.shape[-1])).mean()

        probabilities = probabilities.clamp(PROBABILITY_EPS, 1 - PROBABILITY_EPS)
        scores = torch.log(probabilities / (1 - probabilities))
        if padding is not None:
            scores = crop_padding(scores, padding)
        return scores, uncertainty
