"""The two ResNet-50 encoders: one for memory frames (with mask stems), one for query frames.

At inference (eval mode, no autograd) the convolutions run with their BatchNorm folded
in (model.network.folding) and the memory encoder's frame convolution runs once for all objects;
training runs the modules as released.
"""
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from model.network.folding import DerivedWeights, batchnorm_scale_shift, fold_conv_batchnorm

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
STAGES = ('res2', 'res3', 'res4')


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
        self.folded = DerivedWeights()

    def _normalise(self, frames):
        return (frames - self.mean) / self.std

    def resnet_layers(self):
        """(our module, torchvision ResNet-50 prefix) pairs, for loading ImageNet weights."""
        return [(self.conv1, 'conv1'), (self.bn1, 'bn1'), (self.res2, 'layer1'),
                (self.res3, 'layer2'), (self.res4, 'layer3')]

    def _folding(self):
        """Fold BatchNorm only where nothing can train: eval mode without autograd."""
        return not self.training and not torch.is_grad_enabled()

    def _conv_bn(self, name, conv, bn, x):
        """bn(conv(x)) as one convolution with the folded weights."""
        weight, bias = self.folded.get(name, (conv.weight, bn.weight, bn.bias, bn.running_mean, bn.running_var),
                                       lambda: fold_conv_batchnorm(conv, bn))
        return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)

    def _bottleneck(self, name, block, x):
        """torchvision's Bottleneck with folded BatchNorm."""
        out = self._conv_bn(f'{name}.conv1', block.conv1, block.bn1, x).relu_()
        out = self._conv_bn(f'{name}.conv2', block.conv2, block.bn2, out).relu_()
        out = self._conv_bn(f'{name}.conv3', block.conv3, block.bn3, out)
        if block.downsample is not None:
            x = self._conv_bn(f'{name}.downsample', block.downsample[0], block.downsample[1], x)
        return out.add_(x).relu_()

    def _stage(self, stage_name, x):
        """One of res2, res3, res4 (folded at inference)."""
        stage = getattr(self, stage_name)
        if not self._folding():
            return stage(x)
        for i, block in enumerate(stage):
            x = self._bottleneck(f'{stage_name}.{i}', block, x)
        return x


def _register_imagenet_stats(module):
    module.register_buffer('mean', torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
    module.register_buffer('std', torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))


class MemoryEncoder(_ResNetStages):
    """Encodes a frame together with each object's soft mask and its complement."""

    def __init__(self):
        super().__init__()
        _register_imagenet_stats(self)
        self.conv1_m = nn.Conv2d(1, 64, 7, stride=2, padding=3, bias=False)
        self.conv1_o = nn.Conv2d(1, 64, 7, stride=2, padding=3, bias=False)
        self._build_backbone()

    def forward(self, frame, masks, inverse_masks):
        """frame (1, 3, H, W) in [0, 1]; masks and inverse_masks (obj_n, 1, H, W). Returns r4 (obj_n, ...)."""
        x = self._stem(frame, masks, inverse_masks)
        for stage_name in STAGES:
            x = self._stage(stage_name, x)
        return x

    def _stem(self, frame, masks, inverse_masks):
        """relu(bn1(conv1(frame) + conv1_m(mask) + conv1_o(inverse))) per object, then the max pool."""
        if not self._folding():
            x = self.conv1(self._normalise(frame)) + self.conv1_m(masks) + self.conv1_o(inverse_masks)
            return self.maxpool(self.relu(self.bn1(x)))
        frame_part = self._conv_bn('conv1', self.conv1, self.bn1, self._normalise(frame))
        mask_weight = self.folded.get(
            'conv1_mo', (self.conv1_m.weight, self.conv1_o.weight, self.bn1.weight, self.bn1.bias,
                         self.bn1.running_mean, self.bn1.running_var),
            lambda: torch.cat([self.conv1_m.weight, self.conv1_o.weight], dim=1)
            * batchnorm_scale_shift(self.bn1)[0].view(-1, 1, 1, 1))
        # One convolution over both mask channels, in the frame's channels-last layout (the
        # concatenation of two one-channel images would otherwise come out channels-first).
        pairs = torch.cat([masks, inverse_masks], dim=1).contiguous(memory_format=torch.channels_last)
        x = F.conv2d(pairs, mask_weight, None, self.conv1_m.stride, self.conv1_m.padding)
        return self.maxpool(x.add_(frame_part).relu_())


class QueryEncoder(_ResNetStages):
    """Encodes the frame to segment; returns the features at 1/16, 1/8, 1/4 and 1/2."""

    def __init__(self):
        super().__init__()
        _register_imagenet_stats(self)
        self._build_backbone()

    def forward(self, frames):
        if self._folding():
            r1 = self._conv_bn('conv1', self.conv1, self.bn1, self._normalise(frames)).relu_()
        else:
            r1 = self.relu(self.bn1(self.conv1(self._normalise(frames))))
        r2 = self._stage('res2', self.maxpool(r1))
        r3 = self._stage('res3', r2)
        r4 = self._stage('res4', r3)
        return r4, r3, r2, r1
