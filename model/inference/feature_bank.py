"""The adaptive feature bank: per-object memory of keys and values with a bounded size.

New features close to an existing entry are merged into it; the others are
appended, after evicting the least frequently used entries when the per-object
budget would be exceeded. Usage counts come from the matcher (model.network.matcher).
"""
import math

import torch
import torch.nn.functional as F

from model.inference.options import DEFAULT_BANK_OPTIONS
from utils.errors import UserError


def _budget_factor(obj_n):
    return 0.8 if obj_n == 2 else 1


def per_object_budget(budget, obj_n):
    """Entries each object's bank may hold: budget // obj_n, times 0.8 for two banks (as released)."""
    return _budget_factor(obj_n) * (budget // obj_n)


def _scatter_mean(src, index, size):
    """Column means of `src` (d, m) grouped by `index` (m,) into (d, size); empty groups give 0."""
    total = src.new_zeros(src.shape[0], size).index_add_(1, index, src)
    count = torch.bincount(index, minlength=size).clamp(min=1).to(src.dtype)
    return total / count


def _merge(bank, new, chosen, targets, rate):
    """Move the chosen bank columns towards the mean direction of the new features that hit them.

    Each column keeps its norm: K_j = |K_j| * ((1 - r) K_j / |K_j| + r * mean of normalised new).
    Only the columns hit are normalised: the bank can hold a hundred thousand.
    """
    hit, slots = torch.unique(targets[chosen], return_inverse=True)
    columns = bank[:, hit]
    mean_new = _scatter_mean(F.normalize(new[:, chosen], dim=0), slots, hit.numel())
    bank[:, hit] = columns.norm(p=2, dim=0) * ((1 - rate) * F.normalize(columns, dim=0) + rate * mean_new)


class FeatureBank:
    """Keys (128, n), values (512, n), frame added and usage (n,) for each object, background included."""

    def __init__(self, obj_n, options=DEFAULT_BANK_OPTIONS):
        self.obj_n = obj_n
        self.options = options
        self.class_budget = per_object_budget(options.budget, obj_n)
        self.keys = [None] * obj_n
        self.values = [None] * obj_n
        self.added = [None] * obj_n
        self.usage = [None] * obj_n
        self.peak_n = [0] * obj_n
        self.removed_n = [0] * obj_n

    def _check_frame_fits(self, n_features):
        """A frame's features must fit one object's budget, or the bank would empty itself (the
        released code crashes there); say which budget would do."""
        if n_features > self.class_budget:
            raise UserError(
                f'a bank budget of {self.options.budget} leaves {self.class_budget:g} features per object for '
                f'{self.obj_n} objects (background included), fewer than the {n_features} features one frame '
                f'adds; use a budget of {math.ceil(n_features / _budget_factor(self.obj_n)) * self.obj_n} or more')

    def init(self, keys, values, frame_index=0):
        """Start (or restart) every object's bank from one frame's features."""
        self._check_frame_fits(keys[0].shape[1])
        for i in range(self.obj_n):
            self.keys[i] = keys[i]
            self.values[i] = values[i]
            n = keys[i].shape[1]
            self.added[i] = keys[i].new_full((n,), frame_index)
            self.usage[i] = keys[i].new_zeros(n)
            self.peak_n[i] = max(self.peak_n[i], n)

    def sizes(self):
        return [k.shape[1] for k in self.keys]

    def record_usage(self, obj, counts):
        """Add log(count + 1) to each entry of object `obj`, count = query pixels that attended to it."""
        self.usage[obj] += torch.log(counts.to(self.usage[obj].dtype) + 1)

    def update(self, keys, values, frame_index):
        """Absorb one frame's features (per object (128, m) keys and (512, m) values)."""
        self._check_frame_fits(keys[0].shape[1])
        for i in range(self.obj_n):
            similarity = torch.mm(F.normalize(self.keys[i], dim=0).t(), F.normalize(keys[i], dim=0))
            targets = similarity.argmax(dim=0)
            best_similarity = similarity.gather(0, targets.unsqueeze(0))[0]

            close = best_similarity > self.options.merge_thres
            chosen = close.nonzero()[:, 0]
            _merge(self.keys[i], keys[i], chosen, targets, self.options.update_rate)
            _merge(self.values[i], values[i], chosen, targets, self.options.update_rate)

            fresh = (~close).nonzero()[:, 0]
            request = fresh.numel()
            if self.class_budget < self.keys[i].shape[1] + request:
                self._remove(i, request, frame_index)
            self.keys[i] = torch.cat([self.keys[i], keys[i][:, fresh]], dim=1)
            self.values[i] = torch.cat([self.values[i], values[i][:, fresh]], dim=1)
            self.added[i] = torch.cat([self.added[i], self.added[i].new_full((request,), float(frame_index))])
            self.usage[i] = torch.cat([self.usage[i], self.usage[i].new_zeros(request)])
            self.peak_n[i] = max(self.peak_n[i], self.keys[i].shape[1])
            self.usage[i] = self.usage[i].clamp(0, 1e5)

    def _remove(self, obj, request, frame_index):
        """Evict the least frequently used entries until `request` new ones fit the budget."""
        old_n = self.keys[obj].shape[1]
        frequency = self.usage[obj] / (frame_index - self.added[obj])
        threshold = int(frequency.min()) + 1
        while True:
            keep = frequency > threshold
            self.keys[obj] = self.keys[obj][:, keep]
            self.values[obj] = self.values[obj][:, keep]
            self.added[obj] = self.added[obj][keep]
            self.usage[obj] = self.usage[obj][keep]
            frequency = frequency[keep]
            if self.class_budget - frequency.numel() - request >= 0:
                break
            threshold = int(frequency.min()) + 1
        self.removed_n[obj] += old_n - frequency.numel()

    def report(self):
        """Per object: peak size and removed count, each as a fraction of the per-object budget."""
        return [{'peak': peak / self.class_budget, 'removed': removed / self.class_budget}
                for peak, removed in zip(self.peak_n, self.removed_n)]
