"""Inference weights derived from the trained ones: BatchNorm folded into the convolution before it.

In eval mode a BatchNorm is a per-channel affine map, so conv -> BN is one convolution
with scaled weights and a bias (the same arithmetic up to rounding). The derived
tensors live in a cache, not in the module's parameters, so state_dict() is untouched;
an entry is rebuilt whenever one of its source tensors is replaced or changed in place
(load_state_dict, an optimizer step, .to(), .double()), so it never goes stale.
"""
import weakref

import torch


def batchnorm_scale_shift(bn):
    """(scale, shift) with bn(x) = x * scale + shift per channel, for a BatchNorm in eval mode."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


def fold_conv_batchnorm(conv, bn):
    """(weight, bias) of the convolution equal to bn(conv(x))."""
    scale, shift = batchnorm_scale_shift(bn)
    weight = conv.weight * scale.view(-1, 1, 1, 1)
    bias = shift if conv.bias is None else conv.bias * scale + shift
    return weight, bias


def _stamp(tensor):
    return tensor.data_ptr(), tensor._version, tensor.dtype, tensor.device


class DerivedWeights:
    """A cache of tensors computed from module tensors, keyed by name.

    `get(name, sources, derive)` returns derive()'s result, computed again only when a
    source tensor is no longer the same object, or its storage, version, dtype or device changed.
    """

    def __init__(self):
        self._entries = {}

    def __getstate__(self):
        """Copies and pickles start empty: their tensors are other objects (and weak references do not pickle)."""
        return {}

    def __setstate__(self, state):
        self._entries = {}

    def get(self, name, sources, derive):
        entry = self._entries.get(name)
        if entry is None or not self._still_valid(entry, sources):
            with torch.no_grad():
                value = derive()
            entry = ([weakref.ref(t) for t in sources], [_stamp(t) for t in sources], value)
            self._entries[name] = entry
        return entry[2]

    @staticmethod
    def _still_valid(entry, sources):
        references, stamps, _ = entry
        return (len(references) == len(sources)
                and all(ref() is t for ref, t in zip(references, sources))
                and stamps == [_stamp(t) for t in sources])
