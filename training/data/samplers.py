"""Batch samplers for metric learning: P identities x K images per batch.

Siamese and triplet training both need several images of each identity in a
batch (positives) next to other identities (negatives); a PK batch gives
P·K·(K−1)/2 genuine pairs and all the impostors the miner can choose from.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from numpy.typing import NDArray
from torch.utils.data import Sampler


class PKBatchSampler(Sampler[list[int]]):
    """`batches` batches of `p` distinct identities with `k` images each (dataset row indices).

    An identity with fewer than `k` images repeats some (augmentation makes the
    copies differ). Batches are drawn from a seeded generator, reseeded per epoch.
    """

    def __init__(
        self, labels: Sequence[int] | NDArray[np.int64], p: int, k: int, batches: int, seed: int = 0
    ) -> None:
        label_array = np.asarray(labels, dtype=np.int64)
        if p < 2 or k < 1:
            raise ValueError(f"need p >= 2 identities and k >= 1 images per batch, got p={p}, k={k}")
        identities = np.unique(label_array)
        if len(identities) < p:
            raise ValueError(f"{len(identities)} identities cannot fill batches of p={p} identities")
        self.rows_by_identity = [np.flatnonzero(label_array == label) for label in identities]
        self.p, self.k, self.batches, self.seed = p, k, batches, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.batches

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        for _ in range(self.batches):
            batch: list[int] = []
            for identity in rng.choice(len(self.rows_by_identity), size=self.p, replace=False):
                rows = self.rows_by_identity[identity]
                batch += rng.choice(rows, size=self.k, replace=len(rows) < self.k).tolist()
            yield batch
