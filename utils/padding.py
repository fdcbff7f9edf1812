"""Zero padding to a multiple of the network stride, and cropping back."""
import torch.nn.functional as F


def pad_to_multiple(tensors, multiple=16):
    """Pad the last two dims of each tensor with zeros up to multiples of `multiple`.

    The extra rows/columns are split floor(d/2) before and the rest after.
    Returns the padded tensors and the (left, right, top, bottom) padding.
    """
    h, w = tensors[0].shape[-2:]
    dh, dw = -h % multiple, -w % multiple
    padding = (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2)
    return [F.pad(t, padding) for t in tensors], padding


def crop_padding(tensor, padding):
    left, right, top, bottom = padding
    h, w = tensor.shape[-2:]
    return tensor[..., top:h - bottom, left:w - right]
