"""One training step of the released recipe: memorize the first frame, segment the rest."""
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from model.inference.feature_bank import FeatureBank
from model.inference.options import BankOptions


def freeze_batchnorm(model):
    """Put every BatchNorm layer in eval mode (running statistics fixed), as the released training does."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


@dataclass
class ClipLoss:
    loss: torch.Tensor
    cross_entropy: torch.Tensor
    uncertainty: torch.Tensor
    scores: torch.Tensor


def clip_loss(model, frames, masks, lu, budget):
    """Loss of one clip: frames (clip_n, 3, H, W) in [0, 1], masks (clip_n, obj_n, H, W) one-hot.

    The bank holds frame 0 memorized with its true mask; frames 1.. are segmented as
    one batch. loss = cross-entropy(scores, true labels) + lu * uncertainty term.
    The model must be in training mode (BatchNorm frozen, see freeze_batchnorm).
    """
    bank = FeatureBank(masks.shape[1], BankOptions(budget=budget))
    bank.init(*model.memorize(frames[:1], masks[:1]))
    scores, uncertainty = model.segment(frames[1:], bank)
    cross_entropy = F.cross_entropy(scores, masks[1:].argmax(dim=1))
    return ClipLoss(cross_entropy + lu * uncertainty, cross_entropy, uncertainty, scores)
