"""Kernel Inception Distance (Binkowski et al. 2018, "Demystifying MMD GANs", eq. 4 / appendix).

Unbiased estimate of the squared MMD with the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3,
averaged over random subsets, as torch-fidelity's and clean-fid's ``kernel_distance``:

    MMD^2_u = sum_{i!=j} k(x_i, x_j) / (m (m-1)) + sum_{i!=j} k(y_i, y_j) / (m (m-1))
              - 2 sum_{i,j} k(x_i, y_j) / m^2

Fewer images than the subset size (1000, as torch-fidelity and clean-fid): the subset size shrinks to the
smaller set (``kid_subset_size``), as clean-fid's ``kernel_distance`` does (torch-fidelity refuses instead);
fewer than 2 images in a set: refused with a DataError, since the estimate averages over pairs.
"""

from __future__ import annotations

import numpy as np

from model.errors import DataError

MIN_IMAGES = 2  # the unbiased estimate averages over pairs i != j


def polynomial_kernel(x: np.ndarray, y: np.ndarray, degree: int = 3, coef0: float = 1.0) -> np.ndarray:
    """k(x, y) = (x.y / d + coef0)^degree for all pairs of rows: [n, d] x [m, d] -> [n, m]."""
    return (x @ y.T / x.shape[1] + coef0) ** degree


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 of two equally sized samples [m, d] (the formula above)."""
    m = len(x)
    k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    off_diag = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(off_diag - 2.0 * k_xy.sum() / (m * m))


def kid_subset_size(n1: int, n2: int, subset_size: int = 1000) -> int:
    """The subset size KID uses for sets of n1 and n2 images: ``subset_size``, shrunk to the smaller set.

    Raises DataError when a set has fewer than 2 images."""
    if subset_size < MIN_IMAGES:
        raise ValueError(f"subset_size must be at least {MIN_IMAGES}, got {subset_size}")
    if min(n1, n2) < MIN_IMAGES:
        raise DataError(f"KID needs at least {MIN_IMAGES} images per set, got {n1} and {n2}")
    return min(n1, n2, subset_size)


def kernel_inception_distance(features1: np.ndarray, features2: np.ndarray, n_subsets: int = 100,
                              subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """KID (mean, std over subsets) of two feature sets [N, D]; deterministic given ``seed``.

    ``subset_size`` is capped at the smaller set (``kid_subset_size``); each subset is drawn without
    replacement. When both sets are no larger than ``subset_size``, every subset would be the whole of both
    sets: the estimate is made once, on all of them, and the std is NaN (there is no spread over subsets to
    report, not a spread of 0). Raises DataError when a set has fewer than 2 images.
    """
    f1, f2 = np.asarray(features1, np.float64), np.asarray(features2, np.float64)
    if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1]:
        raise ValueError(f"feature shapes differ: {f1.shape} vs {f2.shape}")
    if n_subsets < 1:
        raise ValueError(f"n_subsets must be at least 1, got {n_subsets}")
    m = kid_subset_size(len(f1), len(f2), subset_size)
    if m == len(f1) == len(f2):
        return mmd2_unbiased(f1, f2), float("nan")
    rng = np.random.default_rng(seed)
    scores = np.array([
        mmd2_unbiased(f1[rng.choice(len(f1), m, replace=False)], f2[rng.choice(len(f2), m, replace=False)])
        for _ in range(n_subsets)
    ])
    return float(scores.mean()), float(scores.std())
