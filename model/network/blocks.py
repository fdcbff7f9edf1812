"""Convolutional building blocks of the decoder (names fixed by the released state dict)."""
import torch.nn.functional as F
from torch import nn


class ResBlock(nn.Module):
    """Pre-activation residual block: x + conv2(relu(conv1(relu(x)))).

    A 3x3 `downsample` convolution maps x to the output shape when the channel
    count or the stride changes.
    """

    def __init__(self, in_channels, out_channels=None, stride=1):
        super().__init__()
        out_channels = out_channels or in_channels
        self.downsample = None
        if in_channels != out_channels or stride != 1:
            self.downsample = nn.Conv2d(in_channels, out_channels, 3, padding=1, stride=stride)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, stride=stride)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)

    def forward(self, x):
        residual = self.conv2(F.relu(self.conv1(F.relu(x)), inplace=True))
        if self.downsample is not None:
            x = self.downsample(x)
        return residual.add_(x)  # in place: a fresh tensor, so no allocation (same sum)


def add_to_each_object_(shared, objects):
    """Add a frame's features (bs, C, h, w) to each of its objects' features (bs * obj_n, C, h, w), in place.

    Callers pass `objects` fresh from a layer: adding in place saves allocating (and, at 1/4 size,
    faulting in) a tensor as large as all objects' features together, every frame.
    """
    return objects.unflatten(0, (shared.shape[0], -1)).add_(shared.unsqueeze(1)).flatten(0, 1)


class Refine(nn.Module):
    """Fuse a skip feature with the coarser prediction upsampled 2x.

    The skip branch depends on the frame only, so it runs once per frame (`skip`)
    and is shared by every object's prediction (`forward`).
    """

    def __init__(self, in_channels, channels):
        super().__init__()
        self.convFS = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.ResFS = ResBlock(channels)
        self.ResMM = ResBlock(channels)

    def skip(self, features):
        return self.ResFS(self.convFS(features))

    def forward(self, skip, coarse):
        """skip (bs, C, 2h, 2w) from `skip`; coarse (bs * obj_n, C, h, w)."""
        upsampled = F.interpolate(coarse, scale_factor=2, mode='bilinear', align_corners=False)
        return self.ResMM(add_to_each_object_(skip, upsampled))
