"""Opt-in reduced precision for inference: the network under torch.autocast.

'fp32' (the default) runs the released arithmetic. 'bf16' (CUDA, or a CPU with
bfloat16 instructions) and 'fp16' (CUDA only) run the convolutions and matrix products
in that type; the feature bank, the scores and the probabilities stay in float32.
benchmarks/precision.py measures their speed and agreement with fp32.
"""
import contextlib

import torch

from utils.errors import UserError

PRECISIONS = ('fp32', 'bf16', 'fp16')
_AUTOCAST_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}


def check_precision(precision, device):
    """Refuse a precision the device cannot run, with the reason."""
    if precision not in PRECISIONS:
        raise UserError(f'precision {precision!r}: choose one of {", ".join(PRECISIONS)}')
    if precision == 'fp16' and device.type != 'cuda':
        raise UserError('precision fp16 needs a CUDA device (float16 convolutions on the CPU are slower than '
                        'float32); use bf16 on the CPU')
    if precision == 'bf16' and device.type == 'cuda' and not torch.cuda.is_bf16_supported():
        raise UserError(f'precision bf16: {torch.cuda.get_device_name(device)} has no bfloat16 support; '
                        f'use fp16')


def autocast(precision, device):
    """The context to run the network in at `precision` on `device` (nothing for fp32)."""
    check_precision(precision, device)
    if precision == 'fp32':
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=_AUTOCAST_DTYPES[precision])
