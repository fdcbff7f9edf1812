"""Equivalence with the authors' released code, on the golden outputs in tests/data.

Each run is compared twice: in float32, the default path, at tolerances that allow
for the CPU and thread count; and in float64 against the released code's float64
twins (`*_f64.npz`), where rounding no longer hides a wrong sum or a wrong order.
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


def load_golden(name):
    return dict(np.load(os.path.join(DATA, name)))


def golden_params(golden, names):
    """A golden file's `params` array as {name: value}."""
    assert len(golden['params']) == len(names)
    return dict(zip(names, golden['params'].tolist()))


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

    assert (logits - torch.from_numpy(golden['logits'])).abs().max().item() <= 1e-4
    assert np.array_equal(sizes, golden['bank_sizes']), (sizes, golden['bank_sizes'])
    np.testing.assert_allclose(usage, golden['usage'], rtol=1e-4)
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


def test_training_step_matches_released_code(one_thread):
    golden = load_golden('train_step.npz')
    result, grad_norms = run_training_step(golden, torch.float32)

    assert torch.allclose(result.scores, torch.from_numpy(golden['logits']), atol=1e-4, rtol=0)
    for value, key in ((result.loss, 'loss'), (result.cross_entropy, 'ce'), (result.uncertainty, 'uncertainty')):
        assert value.item() == pytest.approx(float(golden[key]), rel=1e-5), key
    np.testing.assert_allclose(grad_norms, golden['grad_norms'], rtol=1e-4)


def test_float64_training_step_matches_released_code(float64):
    golden = load_golden('train_step_f64.npz')
    result, grad_norms = run_training_step(golden, float64)

    np.testing.assert_allclose(result.scores.detach().numpy(), golden['logits'], rtol=1e-9, atol=0)
    for value, key in ((result.loss, 'loss'), (result.cross_entropy, 'ce'), (result.uncertainty, 'uncertainty')):
        assert value.item() == pytest.approx(float(golden[key]), rel=1e-9, abs=0), key
    np.testing.assert_allclose(grad_norms, golden['grad_norms'], rtol=1e-9, atol=0)
