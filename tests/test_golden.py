"""Equivalence with the authors' released code, on the golden outputs in tests/data."""
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


def load_golden(name):
    return dict(np.load(os.path.join(DATA, name)))


def recipe_model(seed):
    model = AFBURR()
    model.load_state_dict(recipe_state_dict(seed), strict=True)
    return model


def frame_tensor(frame):
    return torch.from_numpy(frame.astype(np.float32) / 255).permute(2, 0, 1)


@pytest.mark.parametrize('name', ['infer_3obj.npz', 'infer_1obj.npz'])
def test_inference_matches_released_code(name):
    golden = load_golden(name)
    weights_seed, _, n_frames, _, _, _, budget, update_rate, merge_thres = golden['params']
    model = recipe_model(int(weights_seed))
    labels = tuple(present_labels(golden['first_mask']))
    loop = Propagation(model, options=BankOptions(int(budget), float(update_rate), float(merge_thres)))
    items = [FrameItem(t, frame_tensor(f), golden['first_mask'] if t == 0 else None, labels if t == 0 else ())
             for t, f in enumerate(golden['frames'])]

    logits, sizes, usage = [], [], []
    for output in loop.run(items):
        if output.item.index > 0:
            # Yielded after segmenting frame t: the bank still holds what frame t-1 left.
            sizes.append(loop.bank.sizes())
            usage.append([u.sum().item() for u in loop.bank.usage])
            logits.append(output.scores)
    sizes.append(loop.bank.sizes())

    difference = (torch.stack(logits) - torch.from_numpy(golden['logits'])).abs().max().item()
    assert difference <= 1e-4
    assert np.array_equal(np.array(sizes), golden['bank_sizes']), (sizes, golden['bank_sizes'])
    np.testing.assert_allclose(np.array(usage), golden['usage'], rtol=1e-4)
    assert loop.bank.peak_n == golden['peak_n'].tolist()
    assert loop.bank.removed_n == golden['replace_n'].tolist()
    assert loop.bank.class_budget == golden['class_budget']


def test_training_step_matches_released_code(one_thread):
    golden = load_golden('train_step.npz')
    weights_seed, _, _, _, n_objects, lu = golden['params']
    model = recipe_model(int(weights_seed))
    model.train()
    freeze_batchnorm(model)
    frames = torch.stack([frame_tensor(f) for f in golden['frames']])
    masks = torch.stack([torch.from_numpy(golden['masks'] == label).float()
                         for label in range(int(n_objects) + 1)], dim=1)

    result = clip_loss(model, frames, masks, lu=float(lu), budget=BankOptions().budget)
    result.loss.backward()

    assert torch.allclose(result.scores, torch.from_numpy(golden['logits']), atol=1e-4, rtol=0)
    for value, key in ((result.loss, 'loss'), (result.cross_entropy, 'ce'), (result.uncertainty, 'uncertainty')):
        assert value.item() == pytest.approx(float(golden[key]), rel=1e-5), key
    parameters = dict(model.named_parameters())
    ours = [parameters[key].grad.norm().item() for key in golden['grad_keys']]
    np.testing.assert_allclose(ours, golden['grad_norms'], rtol=1e-4)
