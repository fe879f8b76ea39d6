"""Training order and augmentation draws as pure functions of (seed, epoch): resumable exactly, DDP-ready.

`EpochSampler` is a DistributedSampler (Lightning calls `set_epoch` on it and leaves it in place under DDP) that
yields `(epoch, index)` keys; the dataset seeds each sample's augmentation from (seed, epoch, index), so neither
the worker count nor a restart changes what a sample looks like in a given epoch.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
from torch.utils.data import Dataset, DistributedSampler


class EpochSampler(DistributedSampler):
    """Shuffled indices of this rank's share, permuted by (seed, epoch); yields `(epoch, index)`. `start`: positions
    of the next pass's order to leave out, once (a run resumed in the middle of an epoch)."""

    start = 0

    def __init__(self, dataset: Dataset, seed: int, num_replicas: int = 1, rank: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, start, self.start = self.epoch, self.start, 0
        for index in itertools.islice(super().__iter__(), start, None):
            yield epoch, index


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 32-bit seed for one sample's augmentation in one epoch."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])
