"""Algorithm 2 of the study (incremental learning): the training set split into N subsets, E epochs each.

    for i in 0..N-1:             # subset by subset
        for e in 1..E:           # an epoch is one pass over the current subset
            train on subset i
N = 1 is plain batch learning. When a run asks for more epochs than N*E, the subsets cycle.
Every order below is a pure function of (seed, epoch), so a resumed run needs no RNG to rebuild it.
"""

from __future__ import annotations

import numpy as np


def split_subsets(n_images: int, n_subsets: int, seed: int) -> list[np.ndarray]:
    """A seeded partition of range(n_images) into `n_subsets` parts whose sizes differ by at most 1."""
    if n_subsets > n_images:
        raise ValueError(f"train.subsets={n_subsets} is more than the {n_images} training images")
    perm = np.random.default_rng([seed, 0xA1]).permutation(n_images)
    return [np.sort(part) for part in np.array_split(perm, n_subsets)]


def subset_of_epoch(epoch: int, n_subsets: int, epochs_per_subset: int) -> int:
    """Index of the subset trained in (0-based) `epoch`: E epochs on subset 0, then E on subset 1, ..."""
    return (epoch // epochs_per_subset) % n_subsets


def epoch_order(indices: np.ndarray, seed: int, epoch: int) -> np.ndarray:
    """The shuffled visiting order of one epoch."""
    return indices[np.random.default_rng([seed, 0xE9, epoch]).permutation(len(indices))]


def batches(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Consecutive batches; the last one may be smaller (no image of the subset is dropped)."""
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
