"""train.py and model.training on small synthetic datasets, on the CPU.

Runs start from a recipe checkpoint with --resume ... --new (no ImageNet download),
at 32x32 with 3-frame clips and one or two clips per epoch.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import train as train_script
from model.network.afburr import AFBURR
from dataset.training import training_dataset
from model.inference.options import DEFAULT_BANK_OPTIONS
from model.training.config import TrainingConfig
from model.training.loss import freeze_batchnorm
from model.training.trainer import (ClipLossModule, Trainer, restore_training_state, train, train_step,
                                    weights_digest)
from tests.support.recipe import recipe_state_dict, write_recipe_checkpoint
from tests.support.synth import moving_shapes, write_davis
from utils.checkpoint import load_weights, model_state, read_checkpoint
from utils.distributed import ProcessInfo
from utils.errors import UserError
from utils.masks import write_label_mask

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(REPO, 'train.py')
RELEASED_KEYS = {'epoch', 'model', 'optimizer', 'loss', 'seed'}
SEED = 3
SMALL = ['--device', 'cpu', '--output-size', '32', '--clip-n', '3', '--workers', '0', '--seed', str(SEED)]
RUN_TIMEOUT = 300


def _write_video_frames(root, name, frames, masks):
    """A YouTube-VOS train video (level 2): every frame and its mask, named like YouTube frames."""
    for t, (frame, mask) in enumerate(zip(frames, masks)):
        os.makedirs(os.path.join(root, 'JPEGImages', name), exist_ok=True)
        Image.fromarray(frame).save(os.path.join(root, 'JPEGImages', name, f'{5 * t:05d}.jpg'), quality=95)
        write_label_mask(os.path.join(root, 'Annotations', name, f'{5 * t:05d}.png'), mask)


def _write_pretrain_set(root, set_name, frames, masks):
    """Static images and masks in the layout unify_pretrain_dataset.py writes (level 0)."""
    os.makedirs(os.path.join(root, 'JPEGImages', set_name), exist_ok=True)
    for i, (frame, mask) in enumerate(zip(frames, masks)):
        Image.fromarray(frame).save(os.path.join(root, 'JPEGImages', set_name, f'img_{i:03d}.jpg'), quality=95)
        write_label_mask(os.path.join(root, 'Annotations', set_name, f'img_{i:03d}.png'), mask)


# These runs are tiny: one thread is as fast, and stays fast when other work shares the cores
# (oversubscribed threads made them several times slower).
pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(autouse=True)
def remove_run_files(tmp_path):
    """Each run writes checkpoints of about 400 MB, and pytest keeps the temporary folders of recent sessions."""
    yield
    shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('train_data')
    paths = {name: str(root / name) for name in ('davis', 'youtube', 'pretrain')}
    for i in range(3):
        frames, masks = moving_shapes(10 + i, 5, 48, 64, 2)
        write_davis(paths['davis'], f'seq{i}', frames, masks, split='train')
        if i < 2:
            _write_video_frames(paths['youtube'], f'vid{i}', frames, masks)
    frames, masks = moving_shapes(20, 3, 48, 64, 2)
    _write_pretrain_set(paths['pretrain'], 'ECSSD', frames, masks)
    paths['recipe'] = write_recipe_checkpoint(0, str(root / 'recipe.pth'))
    yield paths
    shutil.rmtree(root, ignore_errors=True)


def run_train(args, cwd, env=None, launcher=()):
    """train.py in a new interpreter (optionally under a launcher such as torchrun), one thread each; must succeed."""
    env = dict(os.environ if env is None else env, OMP_NUM_THREADS='1')
    result = subprocess.run([sys.executable, *launcher, TRAIN, *args], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=RUN_TIMEOUT)
    assert result.returncode == 0, f'rc {result.returncode}\n{result.stdout}\n{result.stderr[-4000:]}'
    return result


def log_folders(cwd):
    root = os.path.join(cwd, 'logs')
    return sorted(os.path.join(root, name) for name in os.listdir(root)) if os.path.isdir(root) else []


def check_released_checkpoint(path):
    """The checkpoint has the released keys and its weights load strictly into AFBURR; returns it."""
    checkpoint = read_checkpoint(path)
    assert RELEASED_KEYS <= set(checkpoint)
    assert isinstance(checkpoint['epoch'], int) and isinstance(checkpoint['seed'], int)
    assert isinstance(checkpoint['loss'], float) and np.isfinite(checkpoint['loss'])
    assert set(checkpoint['model']) == set(AFBURR().state_dict())  # no 'module.' prefix either
    load_weights(AFBURR(), checkpoint, path)
    return checkpoint


def check_epoch_files(log_dir, epochs_improved):
    """model/ holds final.pth, best.pth and one epoch_<NNN>_loss_<x.xxx>.pth per improving epoch, nothing else."""
    names = set(os.listdir(os.path.join(log_dir, 'model')))
    epoch_files = {name for name in names if name.startswith('epoch_')}
    assert names == {'final.pth', 'best.pth'} | epoch_files
    assert sorted(int(re.fullmatch(r'epoch_(\d{3})_loss_\d+\.\d{3}\.pth', name).group(1))
                  for name in epoch_files) == epochs_improved
    return epoch_files


@pytest.fixture(scope='module')
def davis_run(data, tmp_path_factory):
    """One epoch of two clips on synthetic DAVIS with --log, DataLoader workers in use."""
    cwd = str(tmp_path_factory.mktemp('davis_run'))
    result = run_train(['--level', '1', '--dataset', data['davis'], '--resume', data['recipe'], '--new', '--log',
                        '--max-iters', '2', '--total-epochs', '1', *SMALL, '--workers', '1'], cwd)
    yield cwd, result
    shutil.rmtree(cwd, ignore_errors=True)


def test_davis_run_writes_released_checkpoints(davis_run):
    cwd, result = davis_run
    [log_dir] = log_folders(cwd)
    assert re.fullmatch(r'level1_\d{8}-\d{6}', os.path.basename(log_dir))
    [epoch_file] = check_epoch_files(log_dir, [0])
    final = check_released_checkpoint(os.path.join(log_dir, 'model', 'final.pth'))
    assert final['epoch'] == 0 and final['seed'] == SEED
    assert epoch_file == f'epoch_000_loss_{final["loss"]:.3f}.pth'
    assert weights_digest(check_released_checkpoint(os.path.join(log_dir, 'model', 'best.pth'))['model']) == \
        weights_digest(final['model'])
    assert len(final['optimizer']['state']) == len(list(AFBURR().parameters()))
    assert os.listdir(os.path.join(log_dir, 'log'))[0].startswith('events.out.tfevents')
    assert 'over 2 clips' in result.stdout


def train_in_process(args, cwd, monkeypatch, capsys):
    """train.py's main in this process (the model code is already warm), from folder `cwd`; returns its stdout."""
    monkeypatch.chdir(cwd)
    rc = train_script.main(args)
    out, err = capsys.readouterr()
    assert rc == 0, f'{out}\n{err[-4000:]}'
    return out


@pytest.mark.parametrize('level, name, epochs_flag', [(2, 'youtube', '--total-epoch'),
                                                       (0, 'pretrain', '--total-epochs')])
def test_youtube_and_pretrain_runs_restart_at_epoch_0_with_new(data, tmp_path, monkeypatch, capsys,
                                                                level, name, epochs_flag):
    later = read_checkpoint(data['recipe'])
    later['epoch'] = 7
    torch.save(later, tmp_path / 'epoch7.pth')
    out = train_in_process(['--level', str(level), '--dataset', data[name], '--resume', 'epoch7.pth', '--new',
                            '--log', '--max-iters', '1', epochs_flag, '1', *SMALL], tmp_path, monkeypatch, capsys)
    [log_dir] = log_folders(str(tmp_path))
    assert os.path.basename(log_dir).startswith(f'level{level}_')
    check_epoch_files(log_dir, [0])
    assert check_released_checkpoint(os.path.join(log_dir, 'model', 'final.pth'))['epoch'] == 0
    assert 'epoch 0: mean loss' in out


def test_total_epoch_is_an_alias_of_total_epochs():
    assert train_script.parse_args(['--dataset', 'd', '--level', '1', '--total-epoch', '7'])['total_epochs'] == 7
    assert train_script.parse_args(['--dataset', 'd', '--level', '1', '--total-epochs', '8'])['total_epochs'] == 8


def test_resume_continues_at_the_next_epoch_in_the_run_folder(data, davis_run, tmp_path, monkeypatch, capsys):
    cwd, _ = davis_run
    [log_dir] = log_folders(cwd)
    before = read_checkpoint(os.path.join(log_dir, 'model', 'final.pth'))
    before['log_dir'] = str(tmp_path / 'run')  # continue in a folder of this test's own
    torch.save(before, tmp_path / 'epoch0.pth')
    out = train_in_process(['--level', '1', '--dataset', data['davis'], '--resume', 'epoch0.pth', '--log',
                            '--max-iters', '1', '--total-epochs', '2', *SMALL, '--seed', '99'],
                           tmp_path, monkeypatch, capsys)
    assert 'resumed from epoch0.pth at epoch 1' in out
    assert log_folders(str(tmp_path)) == []  # no new run folder: the checkpoint's is used
    after = check_released_checkpoint(str(tmp_path / 'run' / 'model' / 'final.pth'))
    assert after['epoch'] == 1 and after['seed'] == SEED  # the run keeps its seed
    assert after['iteration'] == before['iteration'] + 1
    for index, state in before['optimizer']['state'].items():  # Adam's moments went on from the checkpoint's
        assert after['optimizer']['state'][index]['step'].item() == state['step'].item() + 1


def test_restoring_a_checkpoint_gives_its_optimizer_state(davis_run):
    cwd, _ = davis_run
    [log_dir] = log_folders(cwd)
    path = os.path.join(log_dir, 'model', 'final.pth')
    checkpoint = read_checkpoint(path)
    model = load_weights(AFBURR(), checkpoint, path)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1.0)
    scaler = torch.amp.GradScaler('cpu', enabled=False)
    point = restore_training_state(checkpoint, path, optimizer, scaler, ProcessInfo())
    assert (point.start_epoch, point.best_loss, point.log_dir) == (1, checkpoint['best_loss'], log_dir)
    restored = optimizer.state_dict()
    assert restored['param_groups'] == checkpoint['optimizer']['param_groups']
    assert restored['state'].keys() == checkpoint['optimizer']['state'].keys()
    for index, state in checkpoint['optimizer']['state'].items():
        for name, value in state.items():
            assert torch.equal(restored['state'][index][name], value)
    assert torch.equal(torch.get_rng_state(), checkpoint['rng_states'][0]['torch'])


def _config(data, **changes):
    settings = dict(dataset=data['davis'], level=1, device='cpu', seed=5, lr=1e-4, scheduler_step=1, max_iters=1,
                    workers=0, output_size=32, clip_n=3, total_epochs=2)
    settings.update(changes)
    return TrainingConfig(**settings)


def _inputs(config):
    """The dataset and checkpoint train.py gives `train` for this config."""
    dataset = training_dataset(config.level, config.dataset, output_size=config.output_size, clip_n=config.clip_n,
                               obj_n=config.obj_n)
    return dataset, read_checkpoint(config.resume) if config.resume else None


def test_stopping_and_resuming_trains_exactly_like_one_run(data, tmp_path):
    config = _config(data, resume=data['recipe'], new=True)
    straight = Trainer(config, *_inputs(config), ProcessInfo(), torch.device('cpu'))
    straight.run()
    config = _config(data, resume=data['recipe'], new=True, total_epochs=1, log=True, log_root=str(tmp_path))
    first = train(config, *_inputs(config))
    config = _config(data, resume=os.path.join(first.log_dir, 'model', 'final.pth'), log=True)
    second = train(config, *_inputs(config))
    assert second.log_dir == first.log_dir
    resumed = read_checkpoint(os.path.join(first.log_dir, 'model', 'final.pth'))
    assert resumed['epoch'] == 1
    assert weights_digest(resumed['model']) == weights_digest(straight.model.state_dict())
    expected = straight.optimizer.state_dict()
    assert resumed['optimizer']['param_groups'][0]['lr'] == 1e-4 / 2  # halved after epoch 0 in both runs
    for index, state in expected['state'].items():
        for name, value in state.items():
            assert torch.equal(resumed['optimizer']['state'][index][name], value)


# train.py in a new interpreter (argv: repository, N, 'before' or 'after', train.py's flags) that SIGKILLs
# itself right before or after its Nth checkpoint rename, as a kill between or during checkpoint writes would.
KILLED_AT_A_RENAME = '''
import os, runpy, signal, sys
repository, kill_at, when = sys.argv[1], int(sys.argv[2]), sys.argv[3]
renames, replace = [], os.replace

def replace_or_die(source, target):
    if str(target).endswith('.pth'):
        renames.append(target)
    if len(renames) == kill_at and when == 'before':
        os.kill(os.getpid(), signal.SIGKILL)
    replace(source, target)
    if len(renames) == kill_at and when == 'after':
        os.kill(os.getpid(), signal.SIGKILL)

os.replace = replace_or_die
sys.path.insert(0, repository)
sys.argv = [os.path.join(repository, 'train.py'), *sys.argv[4:]]
runpy.run_path(sys.argv[0], run_name='__main__')
'''


def two_epochs(data):
    return ['--level', '1', '--dataset', data['davis'], '--resume', data['recipe'], '--new', '--max-iters', '1',
            '--total-epochs', '2', *SMALL]


@pytest.fixture(scope='module')
def two_epochs_digest(data):
    """The weights digest of two_epochs run straight through, without checkpoints."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the runs it is compared with
    try:
        config, checkpoint = train_script.run_config(train_script.parse_args(two_epochs(data)))
        trainer = Trainer(config, _inputs(config)[0], checkpoint, ProcessInfo(), torch.device('cpu'))
        trainer.run()
        return weights_digest(trainer.model.state_dict())
    finally:
        torch.set_num_threads(threads)


# Epoch 0 writes its epoch file, best.pth and final.pth (renames 1 to 3), improving epoch 1 the same (4 to 6).
@pytest.mark.parametrize('kill_at, when', [(4, 'after'), (5, 'after'), (6, 'before')])
def test_a_run_killed_at_a_checkpoint_write_resumes_without_skipping_an_epoch(
        data, two_epochs_digest, tmp_path, monkeypatch, capsys, kill_at, when):
    killed = subprocess.run([sys.executable, '-c', KILLED_AT_A_RENAME, REPO, str(kill_at), when,
                             *two_epochs(data), '--log'], cwd=tmp_path, env=dict(os.environ, OMP_NUM_THREADS='1'),
                            capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-4000:]
    [log_dir] = log_folders(str(tmp_path))
    final = os.path.join(log_dir, 'model', 'final.pth')
    assert read_checkpoint(final)['epoch'] == 0  # epoch 1's final.pth was not written: it is redone
    if when == 'before':  # the whole temporary final.pth is left, until the resume removes it
        assert [name for name in os.listdir(os.path.dirname(final)) if name.startswith('.final.')]

    train_in_process(['--level', '1', '--dataset', data['davis'], '--resume', final, '--log', '--device', 'cpu'],
                     tmp_path, monkeypatch, capsys)
    [epoch_0, epoch_1] = sorted(check_epoch_files(log_dir, [0, 1]))  # one file per improving epoch, no other
    for name in ('final.pth', 'best.pth', epoch_1):
        checkpoint = read_checkpoint(os.path.join(log_dir, 'model', name))
        assert checkpoint['epoch'] == 1 and weights_digest(checkpoint['model']) == two_epochs_digest, name


# SIGTERM while epoch 0 writes its first checkpoint (epoch_000_*.pth), or its last (final.pth) when best.pth and
# epoch_000_*.pth are written: the line names the newest one written, from which the run continues.
@pytest.mark.parametrize('writing, newest', [('epoch_000', None), ('final', 'best.pth')])
def test_sigterm_during_a_checkpoint_write_exits_130_naming_what_is_kept_and_leaves_no_temporary(
        data, tmp_path, writing, newest):
    stderr_path = tmp_path / 'stderr.txt'
    with open(stderr_path, 'w') as stderr:
        process = subprocess.Popen([sys.executable, TRAIN, *two_epochs(data), '--log'], cwd=tmp_path,
                                   env=dict(os.environ, OMP_NUM_THREADS='1'), stdout=subprocess.DEVNULL,
                                   stderr=stderr)
        try:
            while not [name for log_dir in log_folders(str(tmp_path))
                       for name in os.listdir(os.path.join(log_dir, 'model'))
                       if name.startswith(f'.{writing}') and '.tmp' in name]:
                assert process.poll() is None, stderr_path.read_text()[-4000:]
                time.sleep(0.005)
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=RUN_TIMEOUT) == 130
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    [log_dir] = log_folders(str(tmp_path))
    model_dir = os.path.join(log_dir, 'model')
    expected = ('interrupted: no checkpoint of this run was written; run the same command again to start over'
                if newest is None else f'interrupted: the checkpoints of finished epochs are kept; continue the run '
                                       f'with --resume {os.path.join(model_dir, newest)}')
    assert stderr_path.read_text().strip().splitlines()[-1] == expected
    assert not [name for name in os.listdir(model_dir) if name.startswith('.')]
    if newest is not None:
        assert read_checkpoint(os.path.join(model_dir, newest))['epoch'] == 0


def test_training_on_one_clip_lowers_its_loss():
    frames, labels = moving_shapes(7, 3, 32, 32, 2)
    frames = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    masks = F.one_hot(torch.from_numpy(labels).long(), 3).permute(0, 3, 1, 2).float()
    torch.manual_seed(0)
    model = AFBURR()
    model.load_state_dict(recipe_state_dict(0))
    model.train()
    freeze_batchnorm(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler('cpu', enabled=False)
    step_module = ClipLossModule(model, lu=0.5, budget=DEFAULT_BANK_OPTIONS.budget)
    losses = [train_step(step_module, optimizer, scaler, frames, masks).loss.item() for _ in range(4)]
    assert all(np.isfinite(losses))
    assert losses[-1] < losses[0] - 0.1, losses


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_two_processes_under_torchrun_keep_identical_weights_and_one_set_of_checkpoints(data, tmp_path):
    env = {key: value for key, value in os.environ.items() if key not in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK')}
    if os.path.exists('/sys/class/net/lo'):
        env['GLOO_SOCKET_IFNAME'] = 'lo'
    launcher = ['-m', 'torch.distributed.run', '--nproc_per_node', '2', '--master_addr', '127.0.0.1',
                '--master_port', str(_free_port())]
    # torchrun rejects '--log' as an abbreviation of its own options: the alias --logging is for it.
    result = run_train(['--level', '1', '--dataset', data['davis'], '--resume', data['recipe'], '--new',
                        '--logging', '--max-iters', '1', '--total-epochs', '1', *SMALL], str(tmp_path),
                       env=env, launcher=launcher)
    [log_dir] = log_folders(str(tmp_path))
    check_epoch_files(log_dir, [0])
    assert result.stdout.count('epoch 0: mean loss') == 1  # only rank 0 prints
    assert 'over 2 clips' in result.stdout  # one clip from each process
    [line] = [line for line in result.stdout.splitlines() if line.startswith('weights digest per process:')]
    digests = line.split(':', 1)[1].split()
    final = check_released_checkpoint(os.path.join(log_dir, 'model', 'final.pth'))
    assert digests == [weights_digest(model_state(final))] * 2


# Rank 1's third clip (epoch 1, iteration 1) has NaN frames, so only its loss is NaN there; rank 0's is
# finite until the averaged NaN gradients reach its weights.
NAN_ON_ONE_RANK = '''
import sys
import torch
import torch.distributed as dist
sys.path.insert(0, sys.argv[1])
from dataset.training import training_dataset
from model.training.config import TrainingConfig
from model.training.trainer import train
from utils.checkpoint import read_checkpoint
from utils.cli import run_command

class NanOnRank1(torch.utils.data.Dataset):
    def __init__(self, dataset):
        self.dataset, self.loads = dataset, 0

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        frames, masks, obj_n, info = self.dataset[index]
        self.loads += 1
        if self.loads == 3 and dist.get_rank() == 1:
            frames = torch.full_like(frames, float('nan'))
        return frames, masks, obj_n, info

davis, recipe = sys.argv[2:]
config = TrainingConfig(dataset=davis, level=1, device='cpu', seed=3, log=True, resume=recipe, new=True, lr=1e-5,
                        total_epochs=3, max_iters=2, output_size=32, clip_n=3, workers=0)
dataset = NanOnRank1(training_dataset(1, davis, output_size=32, clip_n=3, obj_n=3))
sys.exit(run_command(lambda: train(config, dataset, read_checkpoint(recipe)), 'not started'))
'''


def test_under_torchrun_a_non_finite_loss_on_one_process_stops_every_process(data, tmp_path):
    script = tmp_path / 'nan_on_one_rank.py'
    script.write_text(NAN_ON_ONE_RANK)
    env = {key: value for key, value in os.environ.items() if key not in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK')}
    env.update(OMP_NUM_THREADS='1', **({'GLOO_SOCKET_IFNAME': 'lo'} if os.path.exists('/sys/class/net/lo') else {}))
    result = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2', '--master_addr',
                             '127.0.0.1', '--master_port', str(_free_port()), str(script), REPO, data['davis'],
                             data['recipe']], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=RUN_TIMEOUT)  # a process left waiting for the other would hang here
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith('error: ')]
    assert len(errors) == 2 and all(line.startswith('error: epoch 1, iteration 1: the loss is nan (training '
                                                    'diverged); stopped without writing these weights.')
                                    for line in errors), result.stderr[-4000:]
    [log_dir] = log_folders(str(tmp_path))
    final = os.path.join(log_dir, 'model', 'final.pth')
    assert sorted(line.split('. ', 1)[1] for line in errors) == [
        f'The learning rate is 1e-05; the checkpoints of finished epochs are kept: start a new run from the last '
        f'with --resume {final} --new --lr <lower>',
        'The learning rate is 1e-05; the first process says which checkpoints are kept']
    check_epoch_files(log_dir, [0])
    assert check_released_checkpoint(final)['epoch'] == 0


def test_training_from_scratch_offline_says_how_to_get_the_imagenet_weights(data, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))  # no cached weights: a download is tried
    for name in ('https_proxy', 'HTTPS_PROXY'):  # and fails at once, as offline, even where there is a network
        monkeypatch.setenv(name, 'http://127.0.0.1:9')
    monkeypatch.delenv('no_proxy', raising=False)
    monkeypatch.delenv('NO_PROXY', raising=False)
    assert train_script.main(['--level', '1', '--dataset', data['davis'], '--max-iters', '1', '--total-epochs', '1',
                              *SMALL]) == 2
    last_line = capsys.readouterr().err.strip().splitlines()[-1]
    assert last_line.startswith('error: could not download the ImageNet ResNet-50 weights')
    assert 'resnet50-0676ba61.pth' in last_line and '--resume' in last_line


@pytest.mark.parametrize('flags, message', [
    (['--device', 'cpu', '--amp'], '--amp: mixed precision training needs a CUDA device'),
    (['--device', 'cpu', '--output-size', '40'], '--output-size 40: must be a positive multiple of 16'),
    (['--device', 'cpu', '--clip-n', '1'], '--clip-n 1: a clip needs at least 2 frames'),
    (['--device', 'cpu', '--resume', 'missing.pth'], 'missing.pth: checkpoint file not found'),
])
def test_bad_settings_give_one_error_line(data, capsys, flags, message):
    assert train_script.main(['--level', '1', '--dataset', data['davis'], *flags]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith('error: ') and message in error and '\n' not in error


def test_resuming_a_weights_only_checkpoint_asks_for_new(data, capsys):
    assert train_script.main(['--level', '1', '--dataset', data['davis'], '--resume', data['recipe'],
                              '--device', 'cpu', '--output-size', '32']) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f'error: {data["recipe"]}: holds no optimizer state') and 'add --new' in error


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the message on a machine without CUDA')
def test_a_gpu_asked_for_without_cuda_says_how_to_use_the_cpu(data, capsys):
    assert train_script.main(['--level', '1', '--dataset', data['davis'], '--gpu', '0']) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith('error: --gpu cuda:0: CUDA is not available') and '--device cpu' in error


def test_a_resume_keeps_the_run_flags_and_warns_about_a_changed_one(data, davis_run, tmp_path, monkeypatch, capsys):
    cwd, _ = davis_run
    [log_dir] = log_folders(cwd)
    before = read_checkpoint(os.path.join(log_dir, 'model', 'final.pth'))
    assert before['flags']['output_size'] == 32 and before['flags']['clip_n'] == 3
    before['log_dir'] = str(tmp_path / 'run')
    torch.save(before, tmp_path / 'epoch0.pth')
    monkeypatch.chdir(tmp_path)
    # --output-size, --max-iters and --workers are not given again: the run's own are used, not the defaults.
    assert train_script.main(['--level', '1', '--dataset', data['davis'], '--resume', 'epoch0.pth', '--log',
                              '--device', 'cpu', '--total-epochs', '2', '--clip-n', '2']) == 0
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if line.startswith('warning: ')] == \
        ['warning: --clip-n 2 differs from the run\'s saved 3; using 2']
    after = read_checkpoint(str(tmp_path / 'run' / 'model' / 'final.pth'))
    assert after['epoch'] == 1
    assert after['flags'] == {**before['flags'], 'clip_n': 2, 'total_epochs': 2}


def test_resume_takes_a_released_name(data, tmp_path, monkeypatch, capsys):
    # The file where an earlier download left it (downloads through the Hub client: tests/test_download.py).
    (tmp_path / 'checkpoints').mkdir()
    shutil.copy(data['recipe'], tmp_path / 'checkpoints' / 'NeurIPS20_level0_PreTrain.pth')
    monkeypatch.setenv('AFBURR_CACHE_DIR', str(tmp_path / 'checkpoints'))
    out = train_in_process(['--level', '1', '--dataset', data['davis'], '--resume', 'pretrain', '--new',
                            '--max-iters', '1', '--total-epochs', '1', *SMALL], tmp_path, monkeypatch, capsys)
    assert f'started from the weights of {tmp_path / "checkpoints" / "NeurIPS20_level0_PreTrain.pth"}' in out


def test_ctrl_c_after_an_epoch_names_the_final_checkpoint_to_continue_from(data, tmp_path, monkeypatch, capsys):
    train_epoch = Trainer.train_epoch

    def interrupted_at_epoch_1(trainer, epoch):
        if epoch == 1:
            raise KeyboardInterrupt
        train_epoch(trainer, epoch)

    monkeypatch.setattr(Trainer, 'train_epoch', interrupted_at_epoch_1)
    monkeypatch.chdir(tmp_path)
    assert train_script.main([*two_epochs(data), '--log']) == 130
    [log_dir] = log_folders(str(tmp_path))
    final = os.path.join(log_dir, 'model', 'final.pth')
    assert capsys.readouterr().err.strip().splitlines()[-1] == \
        f'interrupted: the checkpoints of finished epochs are kept; continue the run with --resume {final}'
    assert read_checkpoint(final)['epoch'] == 0


def test_a_diverging_run_stops_at_the_first_non_finite_loss_and_keeps_the_last_good_checkpoints(
        data, tmp_path, monkeypatch, capsys):
    # --lr 10: epoch 0's one step leaves finite weights (loss 1.607), epoch 1's first loss is NaN.
    monkeypatch.chdir(tmp_path)
    flags = ['--level', '1', '--dataset', data['davis'], '--resume', data['recipe'], '--new', '--max-iters', '1',
             '--total-epochs', '3', '--lr', '10', '--log', *SMALL]
    assert train_script.main(flags) == 2
    out, err = capsys.readouterr()
    [log_dir] = log_folders(str(tmp_path))
    final = os.path.join(log_dir, 'model', 'final.pth')
    assert err.strip().splitlines()[-1] == (
        f'error: epoch 1, iteration 1: the loss is nan (training diverged); stopped without writing these weights. '
        f'The learning rate is 10; the checkpoints of finished epochs are kept: start a new run from the last with '
        f'--resume {final} --new --lr <lower>')
    assert 'epoch 1: mean loss' not in out
    check_epoch_files(log_dir, [0])
    for name in os.listdir(os.path.dirname(final)):
        checkpoint = check_released_checkpoint(os.path.join(log_dir, 'model', name))
        assert checkpoint['epoch'] == 0
        assert all(torch.isfinite(tensor).all() for tensor in checkpoint['model'].values())


def test_weights_that_are_not_finite_are_never_written(data, tmp_path):
    config = _config(data, resume=data['recipe'], new=True, log=True, log_root=str(tmp_path / 'logs'))
    trainer = Trainer(config, *_inputs(config), ProcessInfo(), torch.device('cpu'))
    with torch.no_grad():
        trainer.model.decoder.pred2.weight[0, 0, 0, 0] = float('inf')
    with pytest.raises(UserError, match=r'^epoch 0: its last step left non-finite weights \(decoder.pred2.weight '
                                        r'and 0 more tensors\) though its losses were finite \(training diverged\); '
                                        r'stopped without writing these weights\. The learning rate is 0.0001; '
                                        r'run again with a lower --lr$'):
        trainer.save(0, 1.0, improved=True)
    assert os.listdir(os.path.join(trainer.log_dir, 'model')) == []


def test_an_unreadable_frame_in_a_loading_worker_is_one_error_line(tmp_path):
    frames, masks = moving_shapes(11, 3, 48, 64, 2)
    write_davis(str(tmp_path / 'davis'), 'broken', frames, masks, split='train')
    frame_dir = tmp_path / 'davis' / 'JPEGImages' / '480p' / 'broken'
    for name in os.listdir(frame_dir):
        (frame_dir / name).write_bytes(b'not a JPEG')
    recipe = write_recipe_checkpoint(0, str(tmp_path / 'recipe.pth'))
    result = subprocess.run([sys.executable, TRAIN, '--level', '1', '--dataset', str(tmp_path / 'davis'),
                             '--resume', recipe, '--new', '--total-epochs', '1', *SMALL, '--workers', '1'],
                            cwd=tmp_path, env=dict(os.environ, OMP_NUM_THREADS='1'), capture_output=True, text=True,
                            timeout=RUN_TIMEOUT)
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()[-1:]
    assert re.fullmatch(rf'error: {re.escape(str(frame_dir))}/\d{{5}}\.jpg: cannot read image file \(.*\)', line)
    assert 'Traceback' not in result.stderr and 'DataLoader worker' not in result.stderr
