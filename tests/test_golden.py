"""Equivalence with the authors' released code, on the golden outputs in tests/data.

Each run is compared twice: in float32, the default path, and in float64 against the
released code's float64 twins (`*_f64.npz`), where rounding no longer hides a wrong sum
or a wrong order. The float32 tolerances come from the golden files themselves, not from
what one machine measured: how far the released code's own float32 run is from its
float64 run is how much float32 rounding moves each quantity, and another CPU, thread
count or kernel set moves ours by about as much (`python -m tests.support.golden_matrix`
runs this file in six thread and kernel settings).
"""
import os

import numpy as np
import pytest
import torch

from model.inference.options import BankOptions
from model.inference.propagation import FrameItem, Propagation
from model.network.afburr import AFBURR
from model.training.loss import clip_loss, freeze_batchnorm
from tests.support.recipe import recipe_state_dict
from utils.masks import present_labels

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data')


# The order of each kind of golden file's `params` array (tests/data, as the golden README lists them).
INFERENCE_PARAMS = ('weights_seed', 'video_seed', 'frames', 'height', 'width', 'objects', 'budget', 'update_rate',
                    'merge_thres')
TRAINING_PARAMS = ('weights_seed', 'video_seed', 'size', 'frames', 'objects', 'lu')

# Our float32 result and the released one each carry float32 rounding of about the measured size, so
# they may differ by twice it; twice again is headroom for a CPU that rounds less luckily than the golden run.
FLOAT32_DISTANCE_FACTOR = 4
# Where the released float32 run happened to land within a rounding step or two of float64 (a scalar
# loss), the measured distance says little: allow at least 16 float32 rounding steps.
FLOAT32_FLOOR = 16 * np.finfo(np.float32).eps


def load_golden(name):
    return dict(np.load(os.path.join(DATA, name)))


def golden_params(golden, names):
    """A golden file's `params` array as {name: value}."""
    assert len(golden['params']) == len(names)
    return dict(zip(names, golden['params'].tolist()))


def float32_tolerance(golden32, golden64, key, relative):
    """FLOAT32_DISTANCE_FACTOR times the largest distance between the released code's float32 and float64
    values of `key` (relative per element, or absolute), at least FLOAT32_FLOOR (times the largest value
    when absolute). The maximum over the array is the scale of float32 rounding there: one element's own
    distance is a single sample of it, near zero by chance for some elements."""
    value32, value64 = np.asarray(golden32[key], np.float64), np.asarray(golden64[key], np.float64)
    if relative:
        return max(FLOAT32_DISTANCE_FACTOR * np.max(np.abs(value32 / value64 - 1)), FLOAT32_FLOOR)
    return max(FLOAT32_DISTANCE_FACTOR * np.max(np.abs(value32 - value64)), FLOAT32_FLOOR * np.max(np.abs(value64)))


def assert_float32_close(ours, golden_name, key, relative):
    """Our float32 `ours` is within float32_tolerance of the released float32 value; prints the margin
    (pytest -s shows it; tests.support.golden_matrix collects it)."""
    golden32, golden64 = load_golden(golden_name), load_golden(golden_name.replace('.npz', '_f64.npz'))
    ours, expected = np.asarray(ours, np.float64), np.asarray(golden32[key], np.float64)
    distance = np.max(np.abs(ours / expected - 1) if relative else np.abs(ours - expected))
    tolerance = float32_tolerance(golden32, golden64, key, relative)
    print(f'float32 margin {golden_name} {key}: {distance:.3g} of {tolerance:.3g} allowed '
          f'({"relative" if relative else "absolute"})')
    assert distance <= tolerance, f'{golden_name} {key}: {distance:.3g} > {tolerance:.3g}'


def recipe_model(seed, dtype):
    model = AFBURR()
    model.load_state_dict(recipe_state_dict(seed), strict=True)
    return model.to(dtype)


def frame_tensor(frame, dtype):
    return torch.from_numpy(frame.astype(np.float64 if dtype == torch.float64 else np.float32) / 255).permute(2, 0, 1)


def usage_sums(bank):
    """Each object's usage summed as the golden files sum it: the usage column of the released
    (n, 2) [frame added, usage] table, whose strided sum adds in another order than a contiguous one."""
    return [torch.stack([added.to(usage.dtype), usage], dim=1)[:, 1].sum().item()
            for added, usage in zip(bank.added, bank.usage)]


def run_inference(golden, dtype):
    """Our loop on a golden video: logits of frames 1.., bank sizes and usage sums after each frame."""
    params = golden_params(golden, INFERENCE_PARAMS)
    model = recipe_model(int(params['weights_seed']), dtype)
    labels = tuple(present_labels(golden['first_mask']))
    loop = Propagation(model, options=BankOptions(int(params['budget']), params['update_rate'], params['merge_thres']))
    items = [FrameItem(t, frame_tensor(f, dtype), golden['first_mask'] if t == 0 else None, labels if t == 0 else ())
             for t, f in enumerate(golden['frames'])]

    logits, sizes, usage = [], [], []
    for output in loop.run(items):
        if output.item.index > 0:
            # Yielded after segmenting frame t: the bank still holds what frame t-1 left.
            sizes.append(loop.bank.sizes())
            usage.append(usage_sums(loop.bank))
            logits.append(output.scores)
    sizes.append(loop.bank.sizes())
    assert all(u.dtype == dtype for u in loop.bank.usage + loop.bank.keys)
    return torch.stack(logits), np.array(sizes), np.array(usage), loop.bank


def assert_bank_report(bank, golden):
    assert bank.peak_n == golden['peak_n'].tolist()
    assert bank.removed_n == golden['replace_n'].tolist()
    assert bank.class_budget == golden['class_budget']


@pytest.mark.parametrize('name', ['infer_3obj.npz', 'infer_1obj.npz'])
def test_inference_matches_released_code(name):
    golden = load_golden(name)
    logits, sizes, usage, bank = run_inference(golden, torch.float32)

    assert_float32_close(logits.numpy(), name, 'logits', relative=False)
    assert np.array_equal(sizes, golden['bank_sizes']), (sizes, golden['bank_sizes'])
    assert_float32_close(usage, name, 'usage', relative=True)
    assert_bank_report(bank, golden)


@pytest.mark.parametrize('name', ['infer_3obj_f64.npz', 'infer_1obj_f64.npz'])
def test_float64_inference_matches_released_code(name, float64):
    golden = load_golden(name)
    logits, sizes, usage, bank = run_inference(golden, float64)

    # The golden logits are stored in float32: 1e-6 covers that rounding of logits up to ~10.
    assert (logits - torch.from_numpy(golden['logits']).double()).abs().max().item() <= 1e-6
    assert np.array_equal(sizes, golden['bank_sizes']), (sizes, golden['bank_sizes'])
    assert np.array_equal(usage, golden['usage']), np.abs(usage / golden['usage'] - 1).max()
    assert_bank_report(bank, golden)


def run_training_step(golden, dtype):
    params = golden_params(golden, TRAINING_PARAMS)
    model = recipe_model(int(params['weights_seed']), dtype)
    model.train()
    freeze_batchnorm(model)
    frames = torch.stack([frame_tensor(f, dtype) for f in golden['frames']])
    masks = torch.stack([torch.from_numpy(golden['masks'] == label).to(dtype)
                         for label in range(int(params['objects']) + 1)], dim=1)
    result = clip_loss(model, frames, masks, lu=params['lu'], budget=BankOptions().budget)
    result.loss.backward()
    parameters = dict(model.named_parameters())
    return result, [parameters[key].grad.norm().item() for key in golden['grad_keys']]


def test_training_step_matches_released_code():
    golden = load_golden('train_step.npz')
    result, grad_norms = run_training_step(golden, torch.float32)

    assert_float32_close(result.scores.detach().numpy(), 'train_step.npz', 'logits', relative=False)
    for value, key in ((result.loss, 'loss'), (result.cross_entropy, 'ce'), (result.uncertainty, 'uncertainty')):
        assert_float32_close(value.item(), 'train_step.npz', key, relative=True)
    assert_float32_close(grad_norms, 'train_step.npz', 'grad_norms', relative=True)


def test_float64_training_step_matches_released_code(float64):
    golden = load_golden('train_step_f64.npz')
    result, grad_norms = run_training_step(golden, float64)

    np.testing.assert_allclose(result.scores.detach().numpy(), golden['logits'], rtol=1e-9, atol=0)
    for value, key in ((result.loss, 'loss'), (result.cross_entropy, 'ce'), (result.uncertainty, 'uncertainty')):
        assert value.item() == pytest.approx(float(golden[key]), rel=1e-9, abs=0), key
    np.testing.assert_allclose(grad_norms, golden['grad_norms'], rtol=1e-9, atol=0)
