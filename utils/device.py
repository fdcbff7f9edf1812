"""Choosing the device in one place: CUDA when asked for and present, the CPU otherwise."""
import torch

from utils.errors import UserError


def device_name(device=None, gpu=None):
    """The device string for a --device value, or for the released --gpu index (-1 = CPU).

    Neither given: 'auto', the first GPU when CUDA is present, else the CPU.
    """
    if device:
        return device
    if gpu is None:
        return 'auto'
    if gpu < 0:
        return 'cpu'
    return f'cuda:{gpu}'


def select_device(name='cpu', flag='--device', cpu_choice='--device cpu (or --gpu -1)'):
    """A torch.device for 'auto', 'cpu', 'cuda' or 'cuda:N', or a clear error when that GPU is absent.

    `flag` names the setting in messages and `cpu_choice` says how to pick the CPU instead.
    """
    if name == 'auto':
        name = 'cuda' if torch.cuda.is_available() else 'cpu'
    if name == 'cpu':
        return torch.device('cpu')
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f'{flag} {name}: not a device; use cpu, cuda or cuda:N') from None
    if device.type != 'cuda':
        raise UserError(f'{flag} {name}: only cpu and cuda devices are supported')
    if not torch.cuda.is_available():
        raise UserError(f'{flag} {name}: CUDA is not available on this machine (torch {torch.__version__}, '
                        f'CUDA build: {torch.version.cuda or "no"}); use {cpu_choice}')
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise UserError(f'{flag} {name}: this machine has {torch.cuda.device_count()} CUDA device(s), '
                        f'numbered from 0')
    return device


def process_device(name, process, flag='--device'):
    """This process's device: under torchrun (process.distributed) a CUDA device becomes cuda:LOCAL_RANK."""
    device = select_device(name, flag)
    if process.distributed and device.type == 'cuda':
        device = select_device(f'cuda:{process.local_rank}', 'LOCAL_RANK')
    return device
