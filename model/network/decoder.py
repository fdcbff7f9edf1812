"""Decoder with uncertain-region refinement (URR).

Work that depends only on the query frame (the skip branches, the query-value and r1
halves of the fusing convolutions) runs once per frame and is shared by the objects.
"""
import torch
import torch.nn.functional as F
from torch import nn

from model.network.blocks import Refine, ResBlock, add_to_each_object_

GLOBAL_CHANNELS = 256
LOCAL_CHANNELS = 32
LOCAL_WINDOW = 7


def uncertainty_map(probabilities):
    """exp(1 - top1 / top2) over the object axis: (bs, obj_n, h, w) -> (bs, 1, h, w).

    1 where the two most likely objects tie, towards 0 where one clearly wins.
    """
    top2 = probabilities.topk(k=2, dim=1).values
    return torch.exp(1 - top2[:, 0] / (top2[:, 1] + 1e-8)).unsqueeze(1)


def conv_of_concat(conv, objects, shared, shared_first):
    """conv(cat[objects, shared]) (or cat[shared, objects]) as released: the shared half repeated per object.

    objects (bs * obj_n, C1, h, w), shared (bs, C2, h, w).
    """
    repeated = shared.unsqueeze(1).expand(-1, objects.shape[0] // shared.shape[0], -1, -1, -1).flatten(0, 1)
    return conv(torch.cat([repeated, objects] if shared_first else [objects, repeated], dim=1))


def split_conv_of_concat(conv, objects, shared, shared_first):
    """conv_of_concat without repeating the shared half per object: the convolution is split
    along its input channels, so only the summation order differs.
    """
    split = shared.shape[1] if shared_first else conv.weight.shape[1] - shared.shape[1]
    first, second = conv.weight[:, :split], conv.weight[:, split:]
    shared_weight, object_weight = (first, second) if shared_first else (second, first)
    shared_part = F.conv2d(shared, shared_weight, conv.bias, conv.stride, conv.padding)
    return add_to_each_object_(shared_part, F.conv2d(objects, object_weight, None, conv.stride, conv.padding))


def window_mean(x):
    """Mean over the LOCAL_WINDOW^2 window around each pixel, zero padding counted, as released."""
    return F.avg_pool2d(x, LOCAL_WINDOW, stride=1, padding=LOCAL_WINDOW // 2)


def box_mean(x):
    """window_mean as a depthwise convolution with weights 1/49: several times faster on the CPU,
    the same sum in another order.
    """
    channels = x.shape[1]
    weight = x.new_full((channels, 1, LOCAL_WINDOW, LOCAL_WINDOW), 1 / LOCAL_WINDOW ** 2)
    return F.conv2d(x, weight, padding=LOCAL_WINDOW // 2, groups=channels)


def box_max(x):
    """Max over the LOCAL_WINDOW^2 window (max pool 7, stride 1, pad 3), as a row then a column pass."""
    x = F.max_pool2d(x, (1, LOCAL_WINDOW), stride=1, padding=(0, LOCAL_WINDOW // 2))
    return F.max_pool2d(x, (LOCAL_WINDOW, 1), stride=1, padding=(LOCAL_WINDOW // 2, 0))


class Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.convFM = nn.Conv2d(1024, GLOBAL_CHANNELS, 3, padding=1)
        self.ResMM = ResBlock(GLOBAL_CHANNELS)
        self.RF3 = Refine(512, GLOBAL_CHANNELS)
        self.RF2 = Refine(256, GLOBAL_CHANNELS)
        self.pred2 = nn.Conv2d(GLOBAL_CHANNELS, 2, 3, padding=1)
        self.local_convFM = nn.Conv2d(128, LOCAL_CHANNELS, 3, padding=1)
        self.local_ResMM = ResBlock(LOCAL_CHANNELS)
        self.local_pred2 = nn.Conv2d(LOCAL_CHANNELS, 2, 3, padding=1)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode='fan_out', nonlinearity='relu')

    def _fuse(self, conv, objects, shared, shared_first):
        """Training keeps the released float rounding, which the golden gradients are sensitive to;
        inference computes the same sums in a cheaper order."""
        fuse = conv_of_concat if self.training else split_conv_of_concat
        return fuse(conv, objects, shared, shared_first)

    def _window_mean(self, x):
        return window_mean(x) if self.training else box_mean(x)

    def forward(self, readout, query_values, r3, r2, r1):
        """readout (bs * obj_n, 512, h/16, w/16): each object's bank read for the query (batch item
        major); query_values (bs, 512, h/16, w/16); r3, r2, r1 the query's encoder features.

        Returns each object's foreground probability (bs, obj_n, h, w) at full size.
        """
        bs = query_values.shape[0]
        obj_n = readout.shape[0] // bs
        p = self.ResMM(self._fuse(self.convFM, readout, query_values, shared_first=False))
        p = self.RF3(self.RF3.skip(r3), p)
        p = self.RF2(self.RF2.skip(r2), p)
        p = self.pred2(F.relu(p, inplace=True))
        p = F.interpolate(p, scale_factor=2, mode='bilinear', align_corners=False)

        # Normalise the per-object foreground probabilities across objects (as released).
        rough = F.softmax(F.softmax(p, dim=1)[:, 1].unflatten(0, (bs, obj_n)), dim=1)
        refinement = self._local_refinement(r1, rough)
        p = p.unflatten(0, (bs, obj_n)) + uncertainty_map(rough).unsqueeze(1) * refinement.unflatten(0, (bs, obj_n))
        p = F.interpolate(p.flatten(0, 1), scale_factor=2, mode='bilinear', align_corners=False)
        return F.softmax(p, dim=1)[:, 1].unflatten(0, (bs, obj_n))

    def _local_refinement(self, r1, rough):
        """Compare each pixel's r1 feature with its neighbourhood's object-weighted mean.

        r1 (bs, 64, h, w), rough (bs, obj_n, h, w) -> (bs * obj_n, 2, h, w) logit corrections.
        """
        weighted = (r1.unsqueeze(1) * rough.unsqueeze(2)).flatten(0, 1)
        rough = rough.flatten(0, 1).unsqueeze(1)
        r1_local = self._window_mean(weighted) / (self._window_mean(rough) + 1e-8)
        q = self.local_ResMM(self._fuse(self.local_convFM, r1_local, r1, shared_first=True))
        return box_max(rough) * self.local_pred2(F.relu(q))
