"""Decoder with uncertain-region refinement (URR)."""
import torch
import torch.nn.functional as F
from torch import nn

from model.network.blocks import Refine, ResBlock

GLOBAL_CHANNELS = 256
LOCAL_CHANNELS = 32
LOCAL_WINDOW = 7


def uncertainty_map(probabilities):
    """exp(1 - top1 / top2) over the object axis: (bs, obj_n, h, w) -> (bs, 1, h, w).

    1 where the two most likely objects tie, towards 0 where one clearly wins.
    """
    top2 = probabilities.topk(k=2, dim=1).values
    return torch.exp(1 - top2[:, 0] / (top2[:, 1] + 1e-8)).unsqueeze(1)


class Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.convFM = nn.Conv2d(1024, GLOBAL_CHANNELS, 3, padding=1)
        self.ResMM = ResBlock(GLOBAL_CHANNELS)
        self.RF3 = Refine(512, GLOBAL_CHANNELS)
        self.RF2 = Refine(256, GLOBAL_CHANNELS)
        self.pred2 = nn.Conv2d(GLOBAL_CHANNELS, 2, 3, padding=1)
        self.local_avg = nn.AvgPool2d(LOCAL_WINDOW, stride=1, padding=LOCAL_WINDOW // 2)
        self.local_max = nn.MaxPool2d(LOCAL_WINDOW, stride=1, padding=LOCAL_WINDOW // 2)
        self.local_convFM = nn.Conv2d(128, LOCAL_CHANNELS, 3, padding=1)
        self.local_ResMM = ResBlock(LOCAL_CHANNELS)
        self.local_pred2 = nn.Conv2d(LOCAL_CHANNELS, 2, 3, padding=1)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode='fan_out', nonlinearity='relu')

    def forward(self, matched, r3, r2, r1, bs, obj_n):
        """matched (bs*obj_n, 1024, h/16, w/16); r3, r2, r1 repeated per object.

        Returns each object's foreground probability (bs*obj_n, H, W) at full size.
        """
        p = self.ResMM(self.convFM(matched))
        p = self.RF3(r3, p)
        p = self.RF2(r2, p)
        p = self.pred2(F.relu(p))
        p = F.interpolate(p, scale_factor=2, mode='bilinear', align_corners=False)

        h, w = p.shape[-2:]
        # Normalise the per-object foreground probabilities across objects (as released).
        rough = F.softmax(F.softmax(p, dim=1)[:, 1].view(bs, obj_n, h, w), dim=1)
        uncertainty = uncertainty_map(rough).expand(-1, obj_n, -1, -1).reshape(bs * obj_n, 1, h, w)
        rough = rough.view(bs * obj_n, 1, h, w)

        # Local refinement: compare each pixel with its neighbourhood's object-weighted feature.
        r1_local = self.local_avg(r1 * rough) / (self.local_avg(rough) + 1e-8)
        confidence = self.local_max(rough)
        q = self.local_ResMM(self.local_convFM(torch.cat([r1, r1_local], dim=1)))
        q = confidence * self.local_pred2(F.relu(q))

        p = p + uncertainty * q
        p = F.interpolate(p, scale_factor=2, mode='bilinear', align_corners=False)
        return F.softmax(p, dim=1)[:, 1]
