"""Sampling uncertainty of one evaluation: a bootstrap over the evaluated samples (Efron & Tibshirani 1993,
"An Introduction to the Bootstrap", ch. 6: the standard error is the sd of the statistic over resamples).

Sample i of an evaluation is a pair (output i, target i); a resample draws n indices with replacement and takes
both sides' rows at those indices (paired), so the spread covers the draw of the evaluation inputs as well as
of the outputs. Every metric of one call uses the same resamples, with a fixed seed: the same call gives the
same numbers.

FID and KID are recomputed per resample from n x n Gram matrices computed once (G_ab = A B^T of the features),
so a resample costs O(n^3), not O(n D^2) (n = 100, D = 2048: about 1 ms instead of a 2048^2 covariance):
  - FID (Heusel et al. 2017): with centred resampled features A_c = H A, B_c = H B (H = I - 11^T / n),
    tr S_a = tr(H G_aa H) / (n-1), tr sqrt(S_a S_b) = nuclear norm of H G_ba H / (n-1) (the singular values of
    F_b^T F_a, F = centred features^T / sqrt(n-1), are the square roots of the eigenvalues of F_a^T S_b F_a:
    the same identity model/metrics/fid.py uses), and ||mu_a - mu_b||^2 = 1^T (G_aa + G_bb - 2 G_ab) 1 / n^2.
  - KID (Binkowski et al. 2018, eq. 4): the kernel k = (G / D + 1)^3 of the resampled rows, unbiased MMD^2 over
    pairs of distinct positions (a sample drawn twice counts as two positions, as the bootstrap requires).
With the identity resample both equal model/metrics/fid.py's and kid.py's values (tested).
"""

from __future__ import annotations

import numpy as np

N_RESAMPLES = 200
SEED = 0
MAX_FEATURE_N = 512  # above this, a resample's n x n SVD costs more than the evaluation: no fid_se / kid_se


def resamples(n: int, n_resamples: int = N_RESAMPLES, seed: int = SEED) -> np.ndarray:
    """[n_resamples, n] indices drawn with replacement (deterministic given seed)."""
    return np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))


def _fid_from_grams(g_aa: np.ndarray, g_bb: np.ndarray, g_ab: np.ndarray) -> float:
    n = len(g_aa)
    h = np.eye(n) - 1.0 / n

    def centred(g):
        return h @ g @ h

    mean_term = (g_aa.sum() + g_bb.sum() - 2.0 * g_ab.sum()) / n**2
    tr_a, tr_b = np.trace(centred(g_aa)) / (n - 1), np.trace(centred(g_bb)) / (n - 1)
    tr_covmean = np.linalg.svd(centred(g_ab.T) / (n - 1), compute_uv=False).sum()
    return float(mean_term + tr_a + tr_b - 2.0 * tr_covmean)


def _kid_from_grams(g_aa: np.ndarray, g_bb: np.ndarray, g_ab: np.ndarray, dim: int) -> float:
    m = len(g_aa)
    k_aa, k_bb, k_ab = ((g / dim + 1.0) ** 3 for g in (g_aa, g_bb, g_ab))
    off = (k_aa.sum() - np.trace(k_aa) + k_bb.sum() - np.trace(k_bb)) / (m * (m - 1))
    return float(off - 2.0 * k_ab.sum() / (m * m))


def feature_metrics(a: np.ndarray, b: np.ndarray, idx: np.ndarray | None = None,
                    which=("fid", "kid")) -> dict[str, np.ndarray]:
    """FID and KID of feature sets a, b [n, D] (row i of both: sample i) for each resample in idx
    [R, n] (None: the identity, R = 1); {metric: [R]}. Needs equal n (the evaluator's reference set is its own
    n targets) and n >= 2."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 2 or len(a) < 2:
        raise ValueError(f"expected two [n, D] feature sets of one shape with n >= 2, got {a.shape}, {b.shape}")
    idx = np.arange(len(a))[None] if idx is None else idx
    g_aa, g_bb, g_ab = a @ a.T, b @ b.T, a @ b.T
    out = {k: np.empty(len(idx)) for k in which}
    for r, i in enumerate(idx):
        sub = (g_aa[np.ix_(i, i)], g_bb[np.ix_(i, i)], g_ab[np.ix_(i, i)])
        if "fid" in out:
            out["fid"][r] = _fid_from_grams(*sub)
        if "kid" in out:
            out["kid"][r] = _kid_from_grams(*sub, a.shape[1])
    return out


def standard_errors(per_image: dict[str, np.ndarray], features: np.ndarray | None = None,
                    reference: np.ndarray | None = None, feature_keys=(), n_resamples: int = N_RESAMPLES,
                    seed: int = SEED) -> dict[str, float]:
    """{<metric>_se: bootstrap standard error} for each per-image metric ([n] arrays: the metric is their mean;
    NaN entries, e.g. an empty hole, are left out of each resample's mean) and for each of `feature_keys`
    ("fid", "kid") of features vs reference ([n, D] each, paired by row), for n <= MAX_FEATURE_N (beyond it
    KID's own std over subsets of 1000 is its uncertainty, and FID gets none)."""
    n = len(features) if features is not None else len(next(iter(per_image.values()), []))
    if n < 2:
        return {}
    idx = resamples(n, n_resamples, seed)
    out = {}
    for k, v in per_image.items():
        v = np.asarray(v, np.float64)
        out[f"{k}_se"] = float(np.nanmean(v[idx], axis=1).std(ddof=1))
    if features is not None and feature_keys and n <= MAX_FEATURE_N:
        for k, values in feature_metrics(features, reference, idx, tuple(feature_keys)).items():
            out[f"{k}_se"] = float(values.std(ddof=1))
    return out
