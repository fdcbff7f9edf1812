"""The feature bank's rules: merge, append, evict, usage, budget; its options' valid ranges."""
import pytest
import torch
import torch.nn.functional as F

from model.inference.feature_bank import FeatureBank, per_object_budget
from model.inference.options import BankOptions
from utils.errors import UserError


def bank_of(keys, values, budget=1000, obj_n=1, update_rate=0.1, merge_thres=0.95):
    bank = FeatureBank(obj_n, BankOptions(budget, update_rate, merge_thres))
    bank.init([keys] * obj_n, [values] * obj_n)
    return bank


def test_merge_keeps_the_entry_norm_and_moves_its_direction():
    keys = torch.tensor([[3.0, 0.0], [0.0, 1.0]])           # entries (3, 0) and (0, 1)
    values = torch.tensor([[2.0, 0.0], [0.0, 5.0]])
    bank = bank_of(keys.clone(), values.clone(), merge_thres=0.9, update_rate=0.5)
    new_keys = torch.tensor([[10.0, 10.0], [0.5, 1.0]])     # both close to entry 0: cosines 0.9988, 0.995
    new_values = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    bank.update([new_keys], [new_values], frame_index=1)

    assert bank.sizes() == [2]                                # merged, nothing appended
    mean_direction = F.normalize(new_keys, dim=0).mean(dim=1)
    expected = 3.0 * (0.5 * torch.tensor([1.0, 0.0]) + 0.5 * mean_direction)
    assert torch.allclose(bank.keys[0][:, 0], expected)
    assert bank.keys[0][:, 0].norm() < 3.0                    # the norm factor is the old one; not renormalised
    assert torch.equal(bank.keys[0][:, 1], keys[:, 1])
    value_direction = F.normalize(new_values, dim=0).mean(dim=1)
    assert torch.allclose(bank.values[0][:, 0], 2.0 * (0.5 * torch.tensor([1.0, 0.0]) + 0.5 * value_direction))
    assert bank.usage[0].tolist() == [0.0, 0.0] and bank.added[0].tolist() == [0.0, 0.0]


def test_dissimilar_features_are_appended_with_their_frame():
    bank = bank_of(torch.eye(2), torch.eye(2))
    bank.update([torch.tensor([[1.0], [1.0]])], [torch.tensor([[4.0], [4.0]])], frame_index=3)
    assert bank.sizes() == [3]
    assert bank.added[0].tolist() == [0.0, 0.0, 3.0]
    assert bank.values[0][:, 2].tolist() == [4.0, 4.0]


def test_budget_rule():
    assert per_object_budget(900, 3) == 300
    assert per_object_budget(500, 2) == pytest.approx(200.0)   # two banks get 0.8 of their share
    assert per_object_budget(1000, 4) == 250


def test_removal_keeps_the_most_used_entries():
    keys = torch.eye(4)
    bank = bank_of(keys.clone(), keys.clone(), budget=4)
    bank.usage[0] = torch.tensor([50.0, 2.0, 30.0, 0.5])    # added at frame 0; scores at t=10: 5, .2, 3, .05
    new = -torch.ones(4, 2) + torch.eye(4)[:, :2] * 0.1     # two new entries unlike any bank entry
    bank.update([new], [new], frame_index=10)
    # threshold floor(0.05) + 1 = 1 removes entries 1 and 3; the two new ones then fit.
    assert bank.sizes() == [4]
    assert torch.equal(bank.keys[0][:, :2], keys[:, [0, 2]])
    assert bank.removed_n == [2] and bank.peak_n == [4]


def test_removal_raises_the_threshold_until_the_request_fits():
    bank = bank_of(torch.eye(4), torch.eye(4), budget=4)
    bank.usage[0] = torch.tensor([50.0, 40.0, 30.0, 25.0])   # scores 5, 4, 3, 2.5 at t=10
    new = -torch.ones(4, 3)
    new[0, 1], new[1, 2] = 1.0, 1.0                          # three new entries, mutually dissimilar to the bank
    bank.update([new], [new], frame_index=10)
    # thr 3 keeps {5, 4}: 2 + 3 > 4; thr 5 keeps nothing above 5; 0 + 3 fits.
    assert bank.sizes() == [3]
    assert bank.removed_n == [4]


def test_usage_is_clamped_and_counted_as_log():
    bank = bank_of(torch.eye(2), torch.eye(2))
    bank.record_usage(0, torch.tensor([0, 3]))
    assert torch.allclose(bank.usage[0], torch.log(torch.tensor([1.0, 4.0])))
    bank.usage[0] = torch.tensor([2e5, -1.0])
    bank.update([torch.eye(2)], [torch.eye(2)], frame_index=1)
    assert bank.usage[0].tolist() == [1e5, 0.0]


def test_budget_smaller_than_one_frame_gives_a_clear_error():
    bank = FeatureBank(1, BankOptions(budget=3))
    with pytest.raises(UserError, match=r'budget of 3 .* fewer than the 4 features one frame adds; use a budget of 4 '):
        bank.init([torch.eye(4)], [torch.eye(4)])
    bank = bank_of(torch.eye(4), torch.eye(4), budget=4)
    with pytest.raises(UserError, match=r'fewer than the 5 features one frame adds'):
        bank.update([-torch.ones(4, 5)], [-torch.ones(4, 5)], frame_index=1)


@pytest.mark.parametrize('settings, message', [
    (dict(update_rate=0.0), r'update_rate=0.0: must be in \(0, 1\]'),
    (dict(update_rate=1.5), r'update_rate=1.5: must be in \(0, 1\]'),
    (dict(update_rate=float('nan')), 'update_rate=nan: must be a number, not NaN'),
    (dict(merge_thres=1.01), r'merge_thres=1.01: must be in \[-1, 1\]'),
    (dict(merge_thres=float('nan')), 'merge_thres=nan: must be a number, not NaN'),
    (dict(budget=0), 'budget=0: must be a positive number of features'),
])
def test_bank_options_out_of_range_are_refused(settings, message):
    with pytest.raises(UserError, match=message):
        BankOptions(**settings)


def test_the_edges_of_the_ranges_are_valid():
    assert BankOptions(budget=1, update_rate=1.0, merge_thres=-1.0).update_rate == 1.0
    assert BankOptions(merge_thres=1.0).merge_thres == 1.0
