"""Seeding and saving the random generators training uses (Python's, numpy's, torch's).

The clip sampler picks frames and objects with Python's `random`, the transforms
and the DataLoader's shuffling use torch's generator, and DataLoader workers are
seeded from torch's. Saved states are tensors and plain data, so a checkpoint that
holds them still loads with torch.load(weights_only=True).
"""
import random

import numpy as np
import torch


def seed_everything(seed):
    """Seed Python's, numpy's and torch's generators (all CUDA devices included) from one integer."""
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def capture_rng_state(device=None):
    """The generators' states as plain data; with a CUDA `device`, that device's generator too."""
    version, internal, gauss_next = random.getstate()
    bit_generator, keys, position, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    state = {
        'python': {'version': version, 'internal': list(internal), 'gauss_next': gauss_next},
        'numpy': {'bit_generator': bit_generator, 'keys': torch.from_numpy(keys.astype(np.int64)),
                  'position': int(position), 'has_gauss': int(has_gauss),
                  'cached_gaussian': float(cached_gaussian)},
        'torch': torch.get_rng_state(),
    }
    if device is not None and torch.device(device).type == 'cuda':
        state['cuda'] = torch.cuda.get_rng_state(device)
    return state


def restore_rng_state(state, device=None):
    """Put the generators back in a state from capture_rng_state."""
    python = state['python']
    random.setstate((python['version'], tuple(python['internal']), python['gauss_next']))
    numpy_state = state['numpy']
    np.random.set_state((numpy_state['bit_generator'], numpy_state['keys'].numpy().astype(np.uint32),
                         numpy_state['position'], numpy_state['has_gauss'], numpy_state['cached_gaussian']))
    torch.set_rng_state(state['torch'].cpu())
    if 'cuda' in state and device is not None and torch.device(device).type == 'cuda':
        torch.cuda.set_rng_state(state['cuda'].cpu(), device)
