"""Building a ready model: from a checkpoint for inference, from ImageNet for training."""
import os

import torch
import torchvision

from model.network.afburr import AFBURR
from utils.checkpoint import load_weights, read_checkpoint
from utils.errors import UserError

IMAGENET_WEIGHTS = torchvision.models.ResNet50_Weights.IMAGENET1K_V1


def load_model(checkpoint_path, device):
    """An AFBURR in eval mode on `device` with the weights of a checkpoint file."""
    model = AFBURR()
    load_weights(model, read_checkpoint(checkpoint_path, device), checkpoint_path)
    return model.to(device).eval()


def load_imagenet_weights(model):
    """Initialise both encoders' ResNet-50 layers from torchvision's ImageNet weights (training from scratch)."""
    try:
        resnet = IMAGENET_WEIGHTS.get_state_dict(progress=True)
    except OSError as error:
        file_name = os.path.basename(IMAGENET_WEIGHTS.url)
        cache = os.path.join(torch.hub.get_dir(), 'checkpoints', file_name)
        raise UserError(f'could not download the ImageNet ResNet-50 weights ({error}); to train from scratch '
                        f'offline put {IMAGENET_WEIGHTS.url} at {cache}, or start from a checkpoint with --resume') from None
    for encoder in (model.encoder_m, model.encoder_q):
        for module, prefix in encoder.resnet_layers():
            module.load_state_dict({key[len(prefix) + 1:]: value for key, value in resnet.items()
                                    if key.startswith(prefix + '.')}, strict=True)
    return model
