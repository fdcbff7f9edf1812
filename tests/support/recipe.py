"""The golden weight recipe: deterministic weights that depend only on each state-dict key.

Both the released code (when the golden files were made) and our model load
these weights, so their outputs can be compared. Each tensor comes from its own
numpy RandomState seeded by the recipe seed and the CRC32 of its key.
"""
import math
import os
import zlib

import numpy as np
import torch

KEYS_TSV = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        'data', 'official_state_dict_keys.tsv')
_IMAGENET = {'mean': (0.485, 0.456, 0.406), 'std': (0.229, 0.224, 0.225)}


def released_keys(path=KEYS_TSV):
    """[(key, shape list, dtype name)] of the released state dict, in its order."""
    with open(path) as f:
        lines = f.read().splitlines()[1:]
    rows = []
    for line in lines:
        key, shape, dtype = line.split('\t')
        rows.append((key, [] if shape == '-' else [int(n) for n in shape.split('x')], dtype))
    return rows


def _recipe_value(key, shape, dtype, seed):
    if dtype == 'int64':
        return np.zeros(shape, np.int64)
    stat = key.rsplit('.', 1)[-1]
    if stat in _IMAGENET and shape == [1, 3, 1, 1]:
        return np.array(_IMAGENET[stat], np.float32).reshape(shape)
    rng = np.random.RandomState((seed * 1000003 + zlib.crc32(key.encode())) % 2 ** 32)
    normal = rng.standard_normal(size=shape).astype(np.float32)
    if len(shape) == 4:
        return normal * np.float32(1.0 / math.sqrt(shape[1] * shape[2] * shape[3]))
    if key.endswith('running_var'):
        return (1.0 + 0.25 * np.abs(normal)).astype(np.float32)
    if key.endswith('running_mean'):
        return (0.1 * normal).astype(np.float32)
    if key.endswith('.weight'):
        return (1.0 + 0.1 * normal).astype(np.float32)
    return (0.1 * normal).astype(np.float32)


def recipe_state_dict(seed):
    return {key: torch.from_numpy(_recipe_value(key, shape, dtype, seed))
            for key, shape, dtype in released_keys()}


def write_recipe_checkpoint(seed, path):
    """A checkpoint in the released layout holding the recipe weights."""
    torch.save({'epoch': 0, 'model': recipe_state_dict(seed), 'optimizer': None,
                'loss': 0.0, 'seed': seed}, path)
    return path
