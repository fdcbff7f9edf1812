"""Key/value projection and the global matcher that reads the feature bank."""
import math

import torch
from torch import nn

KEY_CHANNELS = 128
VALUE_CHANNELS = 512
# A bank entry counts as used by a query pixel when it gets more attention than this.
USAGE_ATTENTION_THRES = 1e-3


class KeyValue(nn.Module):
    """3x3 projections of r4 features (N, 1024, h, w) to keys (N, 128, h, w) and values (N, 512, h, w)."""

    def __init__(self, in_channels=1024, key_channels=KEY_CHANNELS, value_channels=VALUE_CHANNELS):
        super().__init__()
        self.Key = nn.Conv2d(in_channels, key_channels, 3, padding=1)
        self.Value = nn.Conv2d(in_channels, value_channels, 3, padding=1)

    def forward(self, features):
        return self.Key(features), self.Value(features)


def global_match(bank, query_keys, count_usage):
    """Read each object's bank with attention from the query keys.

    query_keys (bs, 128, hw). Returns (bs, obj_n, 512, hw): per object the bank values
    weighted by the attention of each query pixel (the decoder pairs them with the
    query's own values). With count_usage, each bank entry's usage grows by
    log(1 + number of pixels of batch item 0 that gave it attention above USAGE_ATTENTION_THRES).
    """
    readout = []
    for i in range(bank.obj_n):
        keys, values = bank.keys[i], bank.values[i]
        attention = torch.softmax(torch.matmul(keys.t(), query_keys) / math.sqrt(keys.shape[0]), dim=1)
        readout.append(torch.matmul(values, attention))
        if count_usage:
            bank.record_usage(i, (attention[0] > USAGE_ATTENTION_THRES).sum(dim=1))
    return torch.stack(readout, dim=1)
