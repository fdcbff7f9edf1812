"""The training loop of train.py: the released recipe, with exact resume, TensorBoard and torchrun.

Each step trains on one clip: memorize its first frame, segment the others,
loss = cross-entropy + lu * uncertainty term (model.training.loss.clip_loss),
AdamW on all parameters with BatchNorm frozen. StepLR halves the learning rate
every `scheduler_step` epochs. An epoch is one pass over the dataset (one clip per
video or image, as released), capped at `max_iters` clips per process.

With `log`, checkpoints go to <log_root>/level<L>_<YYYYmmdd-HHMMSS>/model/ in the
released layout {'epoch', 'model', 'optimizer', 'loss', 'seed'} plus the extra
keys an exact resume needs: 'best_loss', 'iteration', 'log_dir', 'rng_states'
(one entry per process), 'scaler', and 'flags' (the run's flags, see
model.training.config). TensorBoard scalars go to .../log/.

Under torchrun every process trains on its own share of the clips
(DistributedSampler), DistributedDataParallel averages the gradients, and only
rank 0 prints, logs and writes checkpoints.
"""
import contextlib
import hashlib
import itertools
import math
import os
import time
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from model.inference.precision import released_float32
from model.network.afburr import AFBURR
from model.network.loading import load_imagenet_weights
from model.training.loss import clip_loss, freeze_batchnorm
from model.training.rng_state import capture_rng_state, restore_rng_state, seed_everything
from utils.checkpoint import load_weights, save_checkpoint
from utils.device import process_device
from utils.distributed import (broadcast_from_main, gather_from_all, process_group, process_info,
                               sum_over_processes)
from utils.errors import Interrupted, UserError
from utils.files import make_writable_folder, remove_stale_temporaries
from utils.loader_errors import UserErrorsAsData, raise_load_failures

LR_GAMMA = 0.5


class ClipLossModule(nn.Module):
    """The network with the clip loss as its forward, so DistributedDataParallel sees one call per step."""

    def __init__(self, model, lu, budget):
        super().__init__()
        self.model = model
        self.lu = lu
        self.budget = budget

    def forward(self, frames, masks):
        return clip_loss(self.model, frames, masks, self.lu, self.budget)


def train_step(loss_module, optimizer, scaler, frames, masks, amp=False):
    """One optimisation step on one clip (frames (clip_n, 3, S, S), masks (clip_n, obj_n, S, S)); its ClipLoss.

    Without amp, the forward and backward passes are the released float32 (no TF32 on CUDA).
    """
    device = frames.device
    with contextlib.nullcontext() if amp else released_float32(device):
        with torch.autocast(device.type, enabled=amp):
            result = loss_module(frames, masks)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(result.loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return result


@dataclass
class LossTotals:
    """Sums of the per-clip losses of an epoch, and how many clips they cover."""
    loss: float = 0.0
    cross_entropy: float = 0.0
    uncertainty: float = 0.0
    clips: int = 0

    def add(self, result):
        self.loss += result.loss.item()
        self.cross_entropy += result.cross_entropy.item()
        self.uncertainty += result.uncertainty.item()
        self.clips += 1

    def means(self):
        """{'loss', 'cross_entropy', 'uncertainty'}: per-clip means (nan for no clip)."""
        count = self.clips or math.nan
        return {'loss': self.loss / count, 'cross_entropy': self.cross_entropy / count,
                'uncertainty': self.uncertainty / count}

    def over_processes(self, device):
        """These totals summed over all training processes."""
        loss, cross_entropy, uncertainty, clips = sum_over_processes(
            [self.loss, self.cross_entropy, self.uncertainty, self.clips], device)
        return LossTotals(loss, cross_entropy, uncertainty, int(clips))


@dataclass
class ResumePoint:
    """Where a run starts: its first epoch, the best epoch loss so far, the TensorBoard step and log folder."""
    start_epoch: int = 0
    best_loss: float = math.inf
    iteration: int = 0
    log_dir: str = None


def matching_rng_states(checkpoint, process):
    """The checkpoint's random states when it holds one per process of this run, else None (then the
    generators keep their seeding, as the released code reseeded from the checkpoint's seed)."""
    rng_states = checkpoint.get('rng_states')
    return rng_states if rng_states is not None and len(rng_states) == process.world_size else None


def restore_training_state(checkpoint, source, optimizer, scaler, process, device=None):
    """Continue a run from its checkpoint (resume without --new): optimizer, scaler and RNG states.

    Returns the ResumePoint after the checkpoint's epoch. RNG states are restored
    when the checkpoint has one per process of this run; otherwise the generators
    keep their seeding (as the released code reseeded from the checkpoint's seed).
    """
    for key in ('epoch', 'loss'):
        if key not in checkpoint:
            raise UserError(f'{source}: not a training checkpoint (no {key!r} entry); '
                            f'add --new to start a new run from its weights')
    if checkpoint.get('optimizer') is None:
        raise UserError(f'{source}: holds no optimizer state, so its run cannot be continued; '
                        f'add --new to start a new run from its weights')
    try:
        optimizer.load_state_dict(checkpoint['optimizer'])
    except (ValueError, KeyError, TypeError) as error:
        raise UserError(f'{source}: its optimizer state does not fit this model ({error}); '
                        f'add --new to start a new run from its weights') from None
    if checkpoint.get('scaler'):
        scaler.load_state_dict(checkpoint['scaler'])
    rng_states = matching_rng_states(checkpoint, process)
    if rng_states is not None:
        restore_rng_state(rng_states[process.rank], device)
    return ResumePoint(start_epoch=int(checkpoint['epoch']) + 1,
                       best_loss=float(checkpoint.get('best_loss', checkpoint['loss'])),
                       iteration=int(checkpoint.get('iteration', 0)),
                       log_dir=checkpoint.get('log_dir'))


def new_log_dir(root, level):
    """Create and return ROOT/level<L>_<YYYYmmdd-HHMMSS> (with _1, _2, ... if that exists), as an absolute path."""
    base = os.path.join(root, time.strftime(f'level{level}_%Y%m%d-%H%M%S'))
    for suffix in itertools.count():
        path = base if suffix == 0 else f'{base}_{suffix}'
        try:
            os.makedirs(path)
            return os.path.abspath(path)
        except FileExistsError:
            continue


def epoch_checkpoint_names(epoch, loss, improved):
    """The checkpoints an epoch writes, in order: epoch_<NNN>_loss_<x.xxx>.pth and best.pth when the loss
    improved, then final.pth every epoch. All hold the same state, from which the run continues.

    final.pth comes last because a resume reads it: a run stopped before it is written
    redoes the epoch and writes its files again, so no epoch's files are ever skipped.
    """
    return [f'epoch_{epoch:03d}_loss_{loss:.3f}.pth', 'best.pth', 'final.pth'] if improved else ['final.pth']


def first_divergence(local):
    """The earliest (iteration of the epoch, loss) at which a training process saw a non-finite loss, over all
    processes (each gives its own or None); None when no process saw one."""
    return min((found for found in gather_from_all(local) if found is not None), default=None)


def non_finite_weights(model):
    """The names of the model's floating-point tensors that hold a NaN or an infinity."""
    return [name for name, tensor in model.state_dict().items()
            if tensor.is_floating_point() and not torch.isfinite(tensor).all()]


def weights_digest(state_dict):
    """SHA-256 of a state dict's names, dtypes and values (key order does not matter)."""
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        tensor = state_dict[key].detach().cpu().contiguous().reshape(-1)
        digest.update(f'{key}:{tensor.dtype}:'.encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


@dataclass
class TrainingOutcome:
    best_loss: float  # the best epoch mean loss of the run so far
    log_dir: str  # the run's folder; None without --log and on ranks other than 0


def _run_seed(config, checkpoint, resuming):
    if resuming and int(checkpoint.get('seed', -1)) >= 0:
        return int(checkpoint['seed'])
    if config.seed >= 0:
        return config.seed
    return broadcast_from_main(int(time.time()))


class Trainer:
    """One training run, set up from a TrainingConfig by `train`; `run` trains the remaining epochs."""

    def __init__(self, config, dataset, checkpoint, process, device):
        self.config = config
        self.dataset = dataset
        self.process = process
        self.device = device
        resuming = checkpoint is not None and not config.new
        self.seed = _run_seed(config, checkpoint, resuming)
        seed_everything(self.seed + process.rank)
        self._build_model(checkpoint)
        self._build_optimizer(checkpoint if resuming else None)
        self._build_loader()
        self.log_dir = self.writer = None
        self.newest_checkpoint = None  # the last checkpoint this process wrote
        if config.log and process.is_main:
            self._open_log(resuming)
        self._say_start(checkpoint, resuming)

    def _build_model(self, checkpoint):
        """The network from the checkpoint's weights (else ImageNet's), BatchNorm frozen, and its step module."""
        self.model = AFBURR()
        if checkpoint is not None:
            load_weights(self.model, checkpoint, self.config.resume)
        else:
            load_imagenet_weights(self.model)
        self.model.to(self.device).train()
        freeze_batchnorm(self.model)
        self.step_module = ClipLossModule(self.model, self.config.lu, self.config.budget)
        if self.process.distributed:
            self.step_module = DistributedDataParallel(
                self.step_module, device_ids=[self.device.index] if self.device.type == 'cuda' else None)

    def _build_optimizer(self, continued):
        """AdamW, the gradient scaler and StepLR, restored from the `continued` run's checkpoint if any."""
        config = self.config
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.lr)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=config.amp)
        self.point = ResumePoint()
        if continued is not None:
            self.point = restore_training_state(continued, config.resume, self.optimizer, self.scaler,
                                                self.process, self.device)
        # StepLR is a function of the epoch and the optimizer's learning rate, which the optimizer
        # state holds, so it resumes exactly from last_epoch (as released); no state of its own is saved.
        for group in self.optimizer.param_groups:
            group.setdefault('initial_lr', group['lr'])
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, config.scheduler_step, gamma=LR_GAMMA,
                                                         last_epoch=self.point.start_epoch - 1)

    def _build_loader(self):
        """One clip per step; under torchrun each process draws its own share (DistributedSampler)."""
        process = self.process
        self.sampler = None
        if process.distributed:
            self.sampler = DistributedSampler(self.dataset, num_replicas=process.world_size, rank=process.rank,
                                              shuffle=True, seed=self.seed)
        self.loader = DataLoader(UserErrorsAsData(self.dataset), batch_size=None, shuffle=self.sampler is None,
                                 sampler=self.sampler, num_workers=self.config.workers,
                                 pin_memory=self.device.type == 'cuda')

    def _open_log(self, resuming):
        """The run's folder (a continued run keeps its own), its model/ folder cleaned, and TensorBoard's writer."""
        config = self.config
        self.log_dir = self.point.log_dir if resuming and self.point.log_dir else new_log_dir(
            config.log_root, config.level)
        model_dir = make_writable_folder(os.path.join(self.log_dir, 'model'))
        remove_stale_temporaries(model_dir)  # a killed run's partial checkpoints (each as large as a whole one)
        self.writer = SummaryWriter(os.path.join(self.log_dir, 'log'), purge_step=self.point.iteration)

    def _say_start(self, checkpoint, resuming):
        config, process = self.config, self.process
        self.say(f'level {config.level} dataset {config.dataset}: {len(self.dataset)} training items; '
                 f'device {self.device}' + (f', {process.world_size} processes' if process.distributed else ''))
        if checkpoint is None:
            self.say('started from ImageNet weights')
        elif resuming:
            self.say(f'resumed from {config.resume} at epoch {self.point.start_epoch} '
                     f'(best loss {self.point.best_loss:.5f})')
            rng_states = checkpoint.get('rng_states')
            if rng_states is not None and matching_rng_states(checkpoint, process) is None:
                self.say(f'note: the checkpoint holds random states of {len(rng_states)} processes, this run has '
                         f'{process.world_size}; random generators reseeded from seed {self.seed}')
        else:
            self.say(f'started from the weights of {config.resume}; epoch 0')
        self.say(f'random seed {self.seed}' + (f', log folder {self.log_dir}' if self.log_dir else ''))

    def say(self, message):
        if self.process.is_main:
            print(message, flush=True)

    def run(self):
        config = self.config
        if self.point.start_epoch >= config.total_epochs:
            self.say(f'nothing to train: the run is at epoch {self.point.start_epoch} and '
                     f'--total-epochs is {config.total_epochs}')
        try:
            for epoch in range(self.point.start_epoch, config.total_epochs):
                self.train_epoch(epoch)
            self.check_replicas_agree()
        except KeyboardInterrupt:
            raise Interrupted(self.continuation()) from None
        finally:
            if self.writer is not None:
                self.writer.close()
        return TrainingOutcome(self.point.best_loss, self.log_dir)

    def train_epoch(self, epoch):
        config = self.config
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)
        lr = self.scheduler.get_last_lr()[0]
        self.say(f'epoch {epoch}: learning rate {lr:.3g}')
        clips = len(self.loader) if config.max_iters is None else min(len(self.loader), config.max_iters)
        totals = LossTotals()
        divergence = None  # (iteration of the epoch, loss) where this process's loss first was not finite
        uneven = self.step_module.join() if self.process.distributed else contextlib.nullcontext()
        # A process that skips a clip, or stops at a non-finite loss, makes fewer steps; join keeps the
        # others from waiting for it (they stop too: the averaged gradients carry the NaN to every process).
        bar = tqdm(total=clips, desc=f'epoch {epoch}', disable=not self.process.is_main, dynamic_ncols=True)
        with bar, uneven:  # the bar is closed before an error line
            items = itertools.islice(raise_load_failures(self.loader), clips)
            for clip, (frames, masks, obj_n, _) in enumerate(items, 1):
                if obj_n == 1:  # no object in the first frame's crops: skipped, no update (as released)
                    bar.update(1)
                    continue
                result = train_step(self.step_module, self.optimizer, self.scaler, frames.to(self.device),
                                    masks.to(self.device), config.amp)
                loss = result.loss.item()
                if not math.isfinite(loss):
                    divergence = (clip, loss)
                    break
                totals.add(result)
                self.point.iteration += 1
                bar.update(1)
                bar.set_postfix(loss=f'{loss:.4f}', mean=f'{totals.loss / totals.clips:.4f}')
                if self.writer is not None:
                    self.writer.add_scalar('iteration/loss', loss, self.point.iteration)
                    self.writer.add_scalar('iteration/cross_entropy', result.cross_entropy.item(),
                                           self.point.iteration)
                    self.writer.add_scalar('iteration/uncertainty', result.uncertainty.item(), self.point.iteration)
        divergence = first_divergence(divergence)
        if divergence is not None:
            self.stop_diverged(f'epoch {epoch}, iteration {divergence[0]}: the loss is {divergence[1]}')

        totals = totals.over_processes(self.device)
        if totals.clips == 0:
            raise UserError(f'{config.dataset}: epoch {epoch} found no clip with an object in its first frame; '
                            f'check that the masks label objects (non-zero indices)')
        means = totals.means()
        improved = means['loss'] < self.point.best_loss
        if improved:
            self.point.best_loss = means['loss']
        self.say(f'epoch {epoch}: mean loss {means["loss"]:.5f} (cross-entropy {means["cross_entropy"]:.5f}, '
                 f'uncertainty {means["uncertainty"]:.5f}) over {totals.clips} clips'
                 + (', best so far' if improved else ''))
        if self.writer is not None:
            for name, value in means.items():
                self.writer.add_scalar(f'epoch/{name}', value, epoch)
            self.writer.add_scalar('epoch/learning_rate', lr, epoch)
            self.writer.flush()
        if config.log:
            self.save(epoch, means['loss'], improved)
        self.scheduler.step()

    def save(self, epoch, loss, improved):
        """Write this epoch's checkpoints (rank 0), with every process's RNG state for an exact resume.

        Weights that are no longer finite are never written (every process holds the same, so all stop).
        """
        broken = non_finite_weights(self.model)
        if broken:
            self.stop_diverged(f'epoch {epoch}: its last step left non-finite weights ({broken[0]} and '
                               f'{len(broken) - 1} more tensors) though its losses were finite')
        rng_states = gather_from_all(capture_rng_state(self.device))
        if not self.process.is_main:
            return
        names = epoch_checkpoint_names(epoch, loss, improved)
        for name in names:
            path = os.path.join(self.log_dir, 'model', name)
            save_checkpoint(path, self.model, self.optimizer, epoch=epoch, loss=loss, seed=self.seed,
                            best_loss=self.point.best_loss, iteration=self.point.iteration, log_dir=self.log_dir,
                            rng_states=rng_states, scaler=self.scaler.state_dict(), flags=self.config.run_flags())
            self.newest_checkpoint = path
        self.say('saved ' + ', '.join(names))

    def last_checkpoint(self):
        """The run's newest checkpoint, when this process writes checkpoints: the last one it wrote (an interrupt
        may have stopped the epoch's writes before final.pth), else the final.pth of the run it continues; else
        None."""
        if self.log_dir is None:
            return None
        if self.newest_checkpoint is not None:
            return self.newest_checkpoint
        final = os.path.join(self.log_dir, 'model', 'final.pth')
        return final if os.path.isfile(final) else None

    def continuation(self):
        """What a stopped run keeps and how to go on from it, in words."""
        newest = self.last_checkpoint()
        if newest is not None:
            return f'the checkpoints of finished epochs are kept; continue the run with --resume {newest}'
        if self.config.log and not self.process.is_main:
            return 'the first process says which checkpoints are kept'
        return (f'no checkpoint of this run was written{"" if self.config.log else " (no --log)"}; '
                f'run the same command again to start over')

    def stop_diverged(self, where):
        """Raise the one-line error of a run whose loss or weights stopped being finite."""
        newest = self.last_checkpoint()
        lr = self.scheduler.get_last_lr()[0]
        if newest is not None:
            restart = f'the checkpoints of finished epochs are kept: start a new run from the last with ' \
                      f'--resume {newest} --new --lr <lower>'
        elif self.config.log and not self.process.is_main:
            restart = 'the first process says which checkpoints are kept'
        else:
            restart = 'run again with a lower --lr'
        raise UserError(f'{where} (training diverged); stopped without writing these weights. The learning '
                        f'rate is {lr:g}; {restart}')

    def check_replicas_agree(self):
        """Under torchrun: check that every process ends with the same weights (DDP keeps them so); print digests."""
        if not self.process.distributed:
            return
        digests = gather_from_all(weights_digest(self.model.state_dict()))
        if len(set(digests)) != 1:
            raise RuntimeError(f'training processes ended with different weights: {digests}')
        self.say('weights digest per process: ' + ' '.join(digests))


def train(config, dataset, checkpoint=None):
    """Train as `config` says on `dataset`, in this process or as one torchrun process; returns a TrainingOutcome.

    `checkpoint`: the dict read from config.resume, if any (weights, and the run to continue without config.new).
    """
    process = process_info()
    device = process_device(config.device, process)
    if config.amp and device.type != 'cuda':
        raise UserError(f'--amp: mixed precision training needs a CUDA device (this run is on {device}); '
                        f'drop --amp')
    if process.distributed and device.type == 'cuda':
        torch.cuda.set_device(device)  # NCCL's collectives run on the current device
    with process_group('nccl' if device.type == 'cuda' else 'gloo'):
        return Trainer(config, dataset, checkpoint, process, device).run()
