"""State dict layout, checkpoint loading, devices and the feature bank's rules."""
import os

import pytest
import torch
import torch.nn.functional as F

from model.feature_bank import FeatureBank, per_object_budget
from model.loading import load_model
from model.network import AFBURR
from utils.checkpoint import load_weights, read_checkpoint, save_checkpoint
from utils.device import device_name, select_device
from utils.errors import UserError
from tests.support.recipe import recipe_state_dict, released_keys, write_recipe_checkpoint


def test_state_dict_has_exactly_the_released_keys_shapes_and_dtypes():
    ours = [(key, list(value.shape), str(value.dtype).removeprefix('torch.'))
            for key, value in AFBURR().state_dict().items()]
    assert ours == released_keys()


def test_our_state_dict_loads_strictly_into_a_fresh_model(tmp_path):
    model = AFBURR()
    save_checkpoint(tmp_path / 'ours.pth', model, epoch=3, loss=0.5, seed=1)
    fresh = load_weights(AFBURR(), read_checkpoint(tmp_path / 'ours.pth'), 'ours.pth')
    for key, value in model.state_dict().items():
        assert torch.equal(value, fresh.state_dict()[key])


def test_released_layout_bare_state_dict_and_module_prefix_all_load(tmp_path):
    write_recipe_checkpoint(7, tmp_path / 'released.pth')
    model = load_model(str(tmp_path / 'released.pth'), torch.device('cpu'))
    expected = recipe_state_dict(7)
    assert torch.equal(model.state_dict()['decoder.pred2.weight'], expected['decoder.pred2.weight'])
    assert not model.training

    torch.save({'module.' + k: v for k, v in expected.items()}, tmp_path / 'ddp_bare.pth')
    model = load_weights(AFBURR(), read_checkpoint(tmp_path / 'ddp_bare.pth'), 'ddp_bare.pth')
    assert torch.equal(model.state_dict()['keyval_r4.Key.bias'], expected['keyval_r4.Key.bias'])


def test_a_renamed_key_fails_with_the_missing_and_unexpected_keys(tmp_path):
    state = recipe_state_dict(7)
    state['decoder.pred3.weight'] = state.pop('decoder.pred2.weight')
    torch.save({'epoch': 0, 'model': state}, tmp_path / 'renamed.pth')
    with pytest.raises(UserError) as error:
        load_weights(AFBURR(), read_checkpoint(tmp_path / 'renamed.pth'), 'renamed.pth')
    message = str(error.value)
    assert 'missing keys' in message and "'decoder.pred2.weight'" in message
    assert 'unexpected keys' in message and "'decoder.pred3.weight'" in message
    assert '\n' not in message


class _RunsAShellCommand:
    def __reduce__(self):
        return os.system, ('echo this must never run',)


def test_checkpoint_that_is_not_one_or_runs_code_is_refused(tmp_path):
    (tmp_path / 'text.pth').write_text('hello')
    with pytest.raises(UserError, match='text.pth: not a PyTorch checkpoint'):
        read_checkpoint(tmp_path / 'text.pth')
    torch.save({'model': {}, 'hook': print}, tmp_path / 'code.pth')
    with pytest.raises(UserError, match='code.pth: refused to load: .* global print'):
        read_checkpoint(tmp_path / 'code.pth')
    with pytest.raises(UserError, match='missing.pth: checkpoint file not found'):
        read_checkpoint(tmp_path / 'missing.pth')


def test_a_pickle_that_would_run_a_shell_command_is_refused_and_named(tmp_path):
    torch.save({'model': {}, 'payload': _RunsAShellCommand()}, tmp_path / 'shell.pth')
    with pytest.raises(UserError) as error:
        read_checkpoint(tmp_path / 'shell.pth')
    message = str(error.value)
    assert 'contains objects that safe loading' in message and 'posix.system' in message
    assert 'weights_only=False' not in message and 'truncated' not in message and '\n' not in message


def test_a_truncated_checkpoint_says_so(tmp_path):
    torch.save({'model': recipe_state_dict(7)}, tmp_path / 'whole.pth')
    (tmp_path / 'cut.pth').write_bytes((tmp_path / 'whole.pth').read_bytes()[:4096])
    with pytest.raises(UserError, match='cut.pth: not a PyTorch checkpoint, or a truncated one') as error:
        read_checkpoint(tmp_path / 'cut.pth')
    assert 'weights_only' not in str(error.value)


def test_devices():
    assert select_device('cpu') == torch.device('cpu')
    assert device_name(gpu=-1) == 'cpu' and device_name(gpu=1) == 'cuda:1'
    assert device_name('cuda', gpu=-1) == 'cuda' and device_name() == 'auto'
    assert select_device('auto').type == ('cuda' if torch.cuda.is_available() else 'cpu')
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match='--device cuda: CUDA is not available'):
            select_device('cuda')
    with pytest.raises(UserError, match='--device tpu'):
        select_device('tpu')


def bank_of(keys, values, budget=1000, obj_n=1, update_rate=0.1, merge_thres=0.95):
    bank = FeatureBank(obj_n, budget, update_rate, merge_thres)
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
    bank = FeatureBank(1, budget=3)
    with pytest.raises(UserError, match=r'--budget 3 .* fewer than the 4 features one frame adds; use --budget 4 '):
        bank.init([torch.eye(4)], [torch.eye(4)])
    bank = bank_of(torch.eye(4), torch.eye(4), budget=4)
    with pytest.raises(UserError, match=r'fewer than the 5 features one frame adds'):
        bank.update([-torch.ones(4, 5)], [-torch.ones(4, 5)], frame_index=1)
