"""The network's arithmetic: the released float32 by default, faster reduced precisions opt-in.

'fp32' (the default) runs the released arithmetic. On CUDA that means TF32 off for the
duration: cuDNN runs float32 convolutions in TF32 by default on Ampere and later GPUs,
which moved the golden logits by 3e-3 and changed a bank's size (measured on an H200).
'tf32' (CUDA) allows TF32 in convolutions and matrix products; 'bf16' (CUDA, or a CPU with
bfloat16 instructions) and 'fp16' (CUDA) run them under torch.autocast. With any of them
the feature bank, the scores and the probabilities stay float32.
benchmarks/precision.py measures their agreement with fp32, benchmarks/speed.py their speed.
"""
import contextlib

import torch

from utils.errors import UserError

PRECISIONS = ('fp32', 'tf32', 'bf16', 'fp16')
DEFAULT_PRECISION = 'fp32'
PRECISION_HELP = ('arithmetic of the network: fp32 (default, the released numerics; no TF32 on CUDA), tf32 (CUDA), '
                  'bf16 (CUDA, or a CPU with bfloat16 instructions) or fp16 (CUDA): faster, results differ slightly')
_AUTOCAST_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}


def check_precision(precision, device):
    """Refuse a precision the device cannot run, with the reason. Callers check once, before the model runs
    (eval.py, Segmenter): the loops and network_precision take a checked precision."""
    if precision not in PRECISIONS:
        raise UserError(f'precision {precision!r}: choose one of {", ".join(PRECISIONS)}')
    if precision == 'fp16' and device.type != 'cuda':
        raise UserError('precision fp16 needs a CUDA device (float16 convolutions on the CPU are slower than '
                        'float32); use bf16 on the CPU')
    if precision == 'tf32' and device.type != 'cuda':
        raise UserError('precision tf32 needs a CUDA device (TF32 is a mode of NVIDIA GPUs since Ampere); '
                        'use bf16 on the CPU')
    if precision == 'bf16' and device.type == 'cuda' and not torch.cuda.is_bf16_supported():
        raise UserError(f'precision bf16: {torch.cuda.get_device_name(device)} has no bfloat16 support; '
                        f'use fp16')


@contextlib.contextmanager
def _tf32(allowed):
    """TF32 allowed or not in CUDA convolutions and matrix products, for the duration (then as it was)."""
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = allowed
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def released_float32(device):
    """The context in which float32 work on `device` is the released arithmetic (TF32 off on CUDA)."""
    return _tf32(False) if device.type == 'cuda' else contextlib.nullcontext()


def network_precision(precision, device):
    """The context to run the network in at `precision` on `device` (one check_precision accepted:
    callers check once, not on every frame)."""
    if precision == DEFAULT_PRECISION:
        return released_float32(device)
    if precision == 'tf32':
        return _tf32(True)
    return torch.autocast(device.type, dtype=_AUTOCAST_DTYPES[precision])
