"""UserErrors raised while DataLoader worker processes load items, reaching the caller as their one line.

torch re-raises a worker's exception in the caller with the worker's traceback inside its message. A
dataset wrapped in UserErrorsAsData returns a UserError as data (a LoadFailure) instead, and
raise_load_failures raises it again, unwrapped, where the items are consumed.
"""
from dataclasses import dataclass

from torch.utils.data import Dataset

from utils.errors import UserError


@dataclass
class LoadFailure:
    """A UserError's message, carried from a worker process as an item."""
    message: str


class UserErrorsAsData(Dataset):
    """`dataset`, with a LoadFailure as the item whose loading raised a UserError."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        try:
            return self.dataset[index]
        except UserError as error:
            return LoadFailure(str(error))


def raise_load_failures(items):
    """Yield `items` (from a DataLoader over UserErrorsAsData), raising a LoadFailure's UserError at its turn."""
    for item in items:
        if isinstance(item, LoadFailure):
            raise UserError(item.message)
        yield item
