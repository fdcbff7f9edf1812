"""The inference-only rewrites (folded BatchNorm, shared per-frame work, split convolutions,
box filters, channels-last) compute what the released modules compute, never go stale,
leave the state dict and training alone; reduced precision is opt-in; the allocator setting."""
import copy
import io
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from model.network.decoder import box_max, box_mean
from model.inference.feature_bank import FeatureBank
from model.network.afburr import AFBURR
from model.inference.precision import network_precision
from model.inference.propagation import FrameItem, Propagation
from model.inference.segmenter import Segmenter
from model.training.loss import freeze_batchnorm
from utils.errors import UserError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def random_model(seed=0):
    """Default initialisation, with BatchNorm statistics and affine maps that are not the identity."""
    torch.manual_seed(seed)
    model = AFBURR()
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith(('running_mean', 'bias')) and tensor.is_floating_point():
                tensor.normal_(0, 0.1)
            elif name.endswith('running_var') or (name.endswith('weight') and tensor.dim() == 1):
                tensor.uniform_(0.5, 1.5)
    return model


def inputs(obj_n=3, height=64, width=96, seed=1):
    generator = torch.Generator().manual_seed(seed)
    frame = torch.rand(1, 3, height, width, generator=generator)
    masks = torch.softmax(4 * torch.randn(1, obj_n, height, width, generator=generator), dim=1)
    return frame, masks


def released_arithmetic(model):
    """Training mode with frozen BatchNorm runs the modules as released (no padding at these sizes)."""
    model.train()
    freeze_batchnorm(model)
    return model


def test_inference_matches_the_released_modules_in_float64(float64):
    model = random_model().double()
    frame, masks = inputs()
    with torch.no_grad():
        keys, values = released_arithmetic(model).memorize(frame, masks)
        bank = FeatureBank(3)
        bank.init(keys, values)
        released_scores, _ = model.segment(frame, bank)

        model.eval()
        fast_keys, fast_values = model.memorize(frame, masks)
        fast_scores, _ = model.segment(frame, bank)
    torch.testing.assert_close(fast_keys, keys, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(fast_values, values, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(fast_scores, released_scores, rtol=1e-10, atol=1e-10)


def memorize_at_inference(model, frame, masks):
    with torch.no_grad():
        return model.eval().memorize(frame, masks)


def test_folded_weights_follow_loading_in_place_changes_and_dtype():
    model, other = random_model(0), random_model(1)
    frame, masks = inputs()
    memorize_at_inference(model, frame, masks)   # folds and caches model's weights

    model.load_state_dict(other.state_dict())
    for ours, expected in zip(memorize_at_inference(model, frame, masks), memorize_at_inference(other, frame, masks)):
        assert torch.equal(ours, expected)

    with torch.no_grad():
        for module in (model, other):
            module.encoder_m.res3[1].bn2.running_var.mul_(3)
            module.encoder_m.bn1.weight.add_(0.5)
    for ours, expected in zip(memorize_at_inference(model, frame, masks), memorize_at_inference(other, frame, masks)):
        assert torch.equal(ours, expected)

    for ours, expected in zip(memorize_at_inference(model.double(), frame.double(), masks.double()),
                              memorize_at_inference(other.double(), frame.double(), masks.double())):
        assert ours.dtype == torch.float64 and torch.equal(ours, expected)


def test_inference_leaves_the_state_dict_alone_and_the_model_picklable():
    model = random_model()
    before = {key: value.clone() for key, value in model.state_dict().items()}
    frame, masks = inputs()
    memorize_at_inference(model, frame, masks)
    after = model.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[key], before[key]) for key in before)
    torch.save(model, io.BytesIO())
    copied = copy.deepcopy(model)
    for ours, expected in zip(memorize_at_inference(copied, frame, masks), memorize_at_inference(model, frame, masks)):
        assert torch.equal(ours, expected)


def test_training_still_trains_batchnorm_and_every_convolution():
    model = released_arithmetic(random_model())
    frame, masks = inputs(height=32, width=48)
    bank = FeatureBank(3)
    bank.init(*model.memorize(frame, masks))
    scores, uncertainty = model.segment(frame, bank)
    (scores.mean() + uncertainty).backward()
    for name in ('encoder_q.bn1.weight', 'encoder_m.res2.0.bn1.bias', 'encoder_m.conv1_o.weight',
                 'decoder.convFM.weight', 'decoder.local_convFM.weight', 'decoder.RF2.convFS.weight'):
        gradient = dict(model.named_parameters())[name].grad
        assert gradient is not None and gradient.abs().sum() > 0, name


def test_frame_work_runs_once_per_frame_not_per_object():
    model = random_model().eval()
    frame, masks = inputs(obj_n=4)
    batch_sizes = []
    for module in (model.decoder.RF3.convFS, model.decoder.RF2.convFS, model.decoder.RF2.ResFS):
        module.register_forward_hook(lambda module, args, output: batch_sizes.append(args[0].shape[0]))
    bank = FeatureBank(4)
    with torch.no_grad():
        bank.init(*model.memorize(frame, masks))
        model.segment(frame, bank)
    assert batch_sizes == [1, 1, 1]


def test_box_filters_are_the_released_pooling(float64):
    x = torch.rand(2, 5, 13, 17)
    torch.testing.assert_close(box_mean(x), F.avg_pool2d(x, 7, stride=1, padding=3), rtol=1e-14, atol=1e-15)
    assert torch.equal(box_max(x - 0.5), F.max_pool2d(x - 0.5, 7, stride=1, padding=3))


def tiny_video(n_frames=3):
    frames = torch.rand(n_frames, 3, 32, 48, generator=torch.Generator().manual_seed(2))
    first_mask = np.zeros((32, 48), np.uint8)
    first_mask[8:24, 10:30] = 1
    return [FrameItem(t, frames[t], first_mask if t == 0 else None, (1,) if t == 0 else ()) for t in range(n_frames)]


def test_bfloat16_is_opt_in_and_keeps_float32_outputs():
    model = random_model().eval()
    reference = [output.probabilities for output in Propagation(model).run(tiny_video())]
    loop = Propagation(model, precision='bf16')
    reduced = [output.probabilities for output in loop.run(tiny_video())]
    assert all(p.dtype == torch.float32 for p in reduced)
    assert all(k.dtype == torch.float32 for k in loop.bank.keys)
    assert max((a - b).abs().max().item() for a, b in zip(reference, reduced)) < 0.1


@pytest.mark.parametrize('precision, message', [('fp16', 'needs a CUDA device'), ('tf32', 'needs a CUDA device'),
                                                ('half', 'choose one of')])
def test_unsupported_precisions_are_refused(precision, message):
    with pytest.raises(UserError, match=message):
        Segmenter(random_model(), precision=precision)


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='glibc malloc')
def test_freed_large_tensors_are_reused_not_mapped_again():
    # A 64 MiB tensor is 16,384 pages: mapped afresh, every allocation faults them all in again.
    # Kept, the heap needs a few rounds to hold enough room; after that nothing faults.
    code = '''
import resource, torch
from utils.allocator import keep_freed_memory
applied = keep_freed_memory()
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    torch.ones(16 << 20)
before = faults()
for _ in range(10):
    torch.ones(16 << 20)
print(applied, faults() - before)
'''
    out = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True, text=True, check=True)
    applied, faults = out.stdout.split()
    assert applied == 'True' and int(faults) < 16384


def test_float32_on_cuda_is_the_released_arithmetic_unless_tf32_is_asked_for():
    # cuDNN allows TF32 by default; the flags are global and can be set without a GPU.
    cuda = torch.device('cuda')
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    try:
        with network_precision('fp32', cuda):
            assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        with network_precision('tf32', cuda):
            assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before
