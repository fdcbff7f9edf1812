"""The flags eval.py, train.py and unify_pretrain_dataset.py share: one definition, help and message each."""
import pytest

import eval as eval_script
import train as train_script
import unify_pretrain_dataset as unify_script
from model.training.config import TrainingConfig
from utils.common_flags import chosen_device
from utils.download import RELEASED_CHECKPOINTS
from utils.errors import UserError

SCRIPTS = {
    'eval.py': (eval_script, ['--level', '1', '--dataset', 'D', '--resume', 'davis17']),
    'train.py': (train_script, ['--level', '1', '--dataset', 'D']),
    'unify_pretrain_dataset.py': (unify_script, ['--name', 'ECSSD', '--src', 'S', '--dst', 'D']),
}


@pytest.mark.parametrize('script', sorted(SCRIPTS))
def test_workers_is_one_flag_with_one_message(script, capsys):
    module, required = SCRIPTS[script]
    with pytest.raises(SystemExit):
        module.parse_args([*required, '--workers', '-1'])
    minimum = 1 if script == 'unify_pretrain_dataset.py' else 0
    assert f'--workers: -1: must be at least {minimum}' in capsys.readouterr().err.replace('/--worker', '')
    given = module.parse_args([*required, '--workers', '3'])
    assert (given['workers'] if isinstance(given, dict) else given.workers) == 3


def test_workers_message_is_the_same_at_parsing_and_in_a_training_config(capsys):
    with pytest.raises(SystemExit):
        train_script.parse_args(['--level', '1', '--dataset', 'D', '--workers', '-1'])
    assert 'argument --workers: -1: must be at least 0' in capsys.readouterr().err
    with pytest.raises(UserError, match=r'^--workers -1: must be at least 0'):
        TrainingConfig(dataset='D', level=1, workers=-1)


def test_unify_keeps_the_released_worker_spelling():
    _, required = SCRIPTS['unify_pretrain_dataset.py']
    assert unify_script.parse_args([*required, '--worker', '4']).workers == 4


def test_an_absent_workers_flag_stays_out_of_train_flags():
    assert 'workers' not in train_script.parse_args(['--level', '1', '--dataset', 'D'])


@pytest.mark.parametrize('script', ['eval.py', 'train.py'])
def test_resume_help_names_every_released_checkpoint(script, capsys):
    module, _ = SCRIPTS[script]
    with pytest.raises(SystemExit):
        module.parse_args(['--help'])
    help_text = ' '.join(capsys.readouterr().out.split())
    assert ' / '.join(RELEASED_CHECKPOINTS) in help_text


def test_the_device_flag_given_names_the_device_in_errors():
    assert chosen_device(None, None) == ('auto', '--gpu')
    assert chosen_device(None, 2) == ('cuda:2', '--gpu')
    assert chosen_device(None, -1) == ('cpu', '--gpu')
    assert chosen_device('cuda:1', 0) == ('cuda:1', '--device')
