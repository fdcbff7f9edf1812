"""Checkpoints: the released keys, layouts that load strictly, and files refused because they are
not checkpoints or would run code."""
import os
import pickle

import pytest
import torch

from model.network.afburr import AFBURR
from model.network.loading import load_model
from tests.conftest import run_code
from tests.support.recipe import recipe_state_dict, released_keys, write_recipe_checkpoint
from utils.checkpoint import load_weights, read_checkpoint, save_checkpoint
from utils.errors import UserError


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


def test_a_checkpoint_write_that_fails_names_the_file_and_keeps_the_old_one(tmp_path):
    path = tmp_path / 'final.pth'
    code = ('import sys\nimport torch\nfrom utils.checkpoint import save_checkpoint\n'
            'save_checkpoint(sys.argv[1], torch.nn.Linear(1000, 100), epoch=int(sys.argv[2]))')
    assert run_code(code, path, 1).returncode == 0
    result = run_code(code, path, 2, file_size_limit=100_000)  # the checkpoint needs about 400 kB
    assert result.stderr.strip().splitlines()[-1] == (
        f'utils.files.WriteError: {path}: cannot write it (File too large); free disk space or make its folder '
        f'writable, then run again')
    assert os.listdir(tmp_path) == ['final.pth'] and read_checkpoint(path)['epoch'] == 1


@pytest.mark.parametrize('bad', [float('nan'), float('inf'), -float('inf')])
def test_weights_that_are_not_finite_are_refused_naming_the_file_and_the_first_bad_key(tmp_path, bad):
    state = recipe_state_dict(7)
    state['keyval_r4.Key.bias'][3] = bad
    state['decoder.pred2.weight'][0, 0] = bad
    torch.save({'epoch': 0, 'model': state}, tmp_path / 'diverged.pth')
    with pytest.raises(UserError) as error:
        read_checkpoint(tmp_path / 'diverged.pth')
    assert str(error.value) == (f'{tmp_path / "diverged.pth"}: weight keyval_r4.Key.bias holds NaN or infinite values '
                                f'(saved by a training run that diverged, or damaged); use another checkpoint')
    with pytest.raises(UserError, match='bare.pth: weight keyval_r4.Key.bias holds NaN'):
        torch.save(state, tmp_path / 'bare.pth')
        read_checkpoint(tmp_path / 'bare.pth')


def test_a_plain_pickle_prints_only_our_error_line(tmp_path):
    with open(tmp_path / 'raw.pth', 'wb') as f:
        pickle.dump({'model': {'weight': [1.0, 2.0]}}, f, protocol=4)
    code = ('import sys\nfrom utils.checkpoint import read_checkpoint\nfrom utils.cli import run_command\n'
            'sys.exit(run_command(lambda: read_checkpoint(sys.argv[1]), "nothing"))')
    result = run_code(code, tmp_path / 'raw.pth')
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f'error: {tmp_path / "raw.pth"}: not a PyTorch checkpoint, or a truncated one (Unsupported operand 149)']


@pytest.mark.parametrize('damage, message', [
    (lambda state: {key: value.to(torch.int32) for key, value in state.items()},
     'tensor encoder_m.mean holds int32 values where the model has floating-point weights'),
    (lambda state: {**state, 'encoder_m.bn1.running_var': torch.full_like(state['encoder_m.bn1.running_var'], -1)},
     'tensor encoder_m.bn1.running_var holds negative BatchNorm variances'),
], ids=['int32', 'negative variance'])
def test_finite_but_wrong_weights_are_refused_naming_the_tensor(tmp_path, damage, message):
    torch.save({'epoch': 0, 'model': damage(recipe_state_dict(7))}, tmp_path / 'wrong.pth')
    with pytest.raises(UserError) as error:
        load_model(str(tmp_path / 'wrong.pth'), torch.device('cpu'))
    assert str(error.value).startswith(f'{tmp_path / "wrong.pth"}: {message} (')
