"""The two ResNet-50 encoders: one for memory frames (with mask stems), one for query frames."""
import torch
import torchvision
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class _ResNetStages(nn.Module):
    """ResNet-50 stem and layers 1-3 under the released names, with ImageNet normalisation."""

    def _build_backbone(self):
        resnet = torchvision.models.resnet50(weights=None)
        self.conv1 = resnet.conv1
        self.bn1 = resnet.bn1
        self.relu = resnet.relu
        self.maxpool = resnet.maxpool
        self.res2 = resnet.layer1  # 1/4, 256 channels
        self.res3 = resnet.layer2  # 1/8, 512
        self.res4 = resnet.layer3  # 1/16, 1024

    def _normalise(self, frames):
        return (frames - self.mean) / self.std

    def resnet_layers(self):
        """(our module, torchvision ResNet-50 prefix) pairs, for loading ImageNet weights."""
        return [(self.conv1, 'conv1'), (self.bn1, 'bn1'), (self.res2, 'layer1'),
                (self.res3, 'layer2'), (self.res4, 'layer3')]


def _register_imagenet_stats(module):
    module.register_buffer('mean', torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
    module.register_buffer('std', torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))


class MemoryEncoder(_ResNetStages):
    """Encodes a frame together with one object's soft mask and its complement."""

    def __init__(self):
        super().__init__()
        _register_imagenet_stats(self)
        self.conv1_m = nn.Conv2d(1, 64, 7, stride=2, padding=3, bias=False)
        self.conv1_o = nn.Conv2d(1, 64, 7, stride=2, padding=3, bias=False)
        self._build_backbone()

    def forward(self, frames, masks, inverse_masks):
        """frames (N, 3, H, W) in [0, 1]; masks and inverse_masks (N, 1, H, W). Returns r4, r1."""
        x = self.conv1(self._normalise(frames)) + self.conv1_m(masks) + self.conv1_o(inverse_masks)
        r1 = self.relu(self.bn1(x))
        r4 = self.res4(self.res3(self.res2(self.maxpool(r1))))
        return r4, r1


class QueryEncoder(_ResNetStages):
    """Encodes the frame to segment; returns the features at 1/16, 1/8, 1/4 and 1/2."""

    def __init__(self):
        super().__init__()
        _register_imagenet_stats(self)
        self._build_backbone()

    def forward(self, frames):
        r1 = self.relu(self.bn1(self.conv1(self._normalise(frames))))
        r2 = self.res2(self.maxpool(r1))
        r3 = self.res3(r2)
        r4 = self.res4(r3)
        return r4, r3, r2, r1
