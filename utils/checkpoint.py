"""Checkpoints in the released layout: {'epoch', 'model', 'optimizer', 'loss', 'seed'}.

Loading never runs code from the file (weights_only=True) and refuses NaN or infinite weights;
a bare state dict and a DataParallel/DDP 'module.' prefix are accepted too.
"""
import os
import re
import warnings

import numpy as np
import torch

from utils.errors import UserError
from utils.files import atomic_path

# Plain numpy scalars (e.g. a loss saved as numpy.float64) are data, not code.
_NUMPY_SCALAR_GLOBALS = [np._core.multiarray.scalar, np.dtype] + [
    type(np.dtype(t)) for t in ('float64', 'float32', 'int64', 'int32')]


def _load_failure(error):
    """Why torch.load failed, in one line, without torch's advice to switch safe loading off."""
    text = str(error)
    refused = re.search(r'GLOBAL (\S+)', text)
    if refused:
        return (f'refused to load: it contains objects that safe loading (weights_only=True) does not allow '
                f'(the global {refused.group(1)}), which could run code; use a checkpoint from a trusted source')
    if 'Weights only load failed' in text:
        unsupported = re.search(r'Unsupported operand \d+', text)
        detail = unsupported.group(0) if unsupported else 'unreadable pickle'
    else:
        detail = f'{type(error).__name__}: {text.splitlines()[0].split(". ")[0] if text else ""}'
    return f'not a PyTorch checkpoint, or a truncated one ({detail})'


def read_checkpoint(path, device='cpu', name=None):
    """The checkpoint dict at `path` with tensors moved to `device`, or a clear error naming `name` (default:
    `path`). Weights that are NaN or infinite are refused: they segment nothing and train nothing."""
    name = path if name is None else name
    if not os.path.isfile(path):
        raise UserError(f'{name}: checkpoint file not found')
    try:
        with torch.serialization.safe_globals(_NUMPY_SCALAR_GLOBALS), warnings.catch_warnings():
            # A plain pickle of another protocol makes torch warn before it fails (or loads); our error says it all.
            warnings.filterwarnings('ignore', message='Detected pickle protocol', category=UserWarning)
            checkpoint = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # torch.load raises many types for files that are not checkpoints
        raise UserError(f'{name}: {_load_failure(error)}') from None
    if not isinstance(checkpoint, dict):
        raise UserError(f'{name}: not an AFB-URR checkpoint (holds a {type(checkpoint).__name__}, not a dict)')
    bad_key = _first_non_finite_key(checkpoint.get('model', checkpoint))
    if bad_key is not None:
        raise UserError(f'{name}: weight {bad_key} holds NaN or infinite values (saved by a training run that '
                        f'diverged, or damaged); use another checkpoint')
    return checkpoint


def _first_non_finite_key(state):
    """The first key of a state dict whose floating-point tensor is not all finite, or None."""
    if not isinstance(state, dict):
        return None
    for key, value in state.items():
        if torch.is_tensor(value) and value.is_floating_point() and not torch.isfinite(value).all():
            return key
    return None


def model_state(checkpoint):
    """The state dict of a released-layout checkpoint or of a bare state dict, without 'module.'."""
    state = checkpoint.get('model', checkpoint)
    if not isinstance(state, dict):
        raise UserError("checkpoint's 'model' entry is not a state dict")
    return {key.removeprefix('module.'): value for key, value in state.items()}


def load_weights(model, checkpoint, source):
    """Load a checkpoint's model weights strictly; on mismatch one message lists the differences."""
    state = model_state(checkpoint)
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    if missing or unexpected:
        raise UserError(f'{source}: not an AFB-URR checkpoint: missing keys {missing or "none"}; '
                        f'unexpected keys {unexpected or "none"}')
    wrong_shape = [f'{key} {tuple(state[key].shape)} (expected {tuple(value.shape)})'
                   for key, value in expected.items() if tuple(state[key].shape) != tuple(value.shape)]
    if wrong_shape:
        raise UserError(f'{source}: checkpoint tensors of the wrong shape: {", ".join(wrong_shape)}')
    _check_values(state, expected, source)
    model.load_state_dict(state, strict=True)
    return model


def _check_values(state, expected, source):
    """Refuse weights that load without error but segment nothing (background on every frame after the first):
    integer tensors where the model's are floating point (their values are cast), and negative BatchNorm
    variances (whose square root is NaN)."""
    for key, value in expected.items():
        given = state[key]
        if value.is_floating_point() and not given.is_floating_point():
            raise UserError(f'{source}: tensor {key} holds {str(given.dtype).removeprefix("torch.")} values where '
                            f'the model has floating-point weights (a converted or damaged checkpoint); use another '
                            f'checkpoint')
        if key.endswith('.running_var') and (given < 0).any():
            raise UserError(f'{source}: tensor {key} holds negative BatchNorm variances (a damaged or edited '
                            f'checkpoint); use another checkpoint')


def save_checkpoint(path, model, optimizer=None, epoch=0, loss=0.0, seed=0, **extra):
    """Write a released-layout checkpoint atomically (a crash mid-write keeps the old file; a failed write
    raises a UserError naming `path`)."""
    model = getattr(model, 'module', model)
    state = {'epoch': epoch, 'model': model.state_dict(),
             'optimizer': optimizer.state_dict() if optimizer is not None else None,
             'loss': float(loss), 'seed': seed, **extra}
    with atomic_path(path) as tmp, open(tmp, 'wb') as file:
        try:
            torch.save(state, file)
        except RuntimeError as error:
            # torch reports what stopped the file's write (a full disk, Ctrl-C or SIGTERM) as a RuntimeError
            if isinstance(error.__context__, (OSError, KeyboardInterrupt)):
                raise error.__context__ from None
            raise
