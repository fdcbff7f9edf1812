"""Choosing the device: CUDA when asked for and present, the CPU otherwise, a clear error else."""
import pytest
import torch

from utils.device import device_name, select_device
from utils.errors import UserError


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
