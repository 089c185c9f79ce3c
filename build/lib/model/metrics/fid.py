"""Frechet Inception Distance (Heusel et al. 2017), numerically equal to pytorch-fid 0.3.0.

    FID = ||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr sqrt(S1 S2)

pytorch-fid takes ``scipy.linalg.sqrtm(S1 @ S2, disp=False)`` (``disp`` is gone in SciPy 1.18), may add
1e-6 to the diagonal when that is not finite, and may return complex values. Only the trace is needed:
with any factor F such that S1 = F F^T, the eigenvalues of S1 S2 are those of the symmetric PSD matrix
F^T S2 F (plus zeros), so tr sqrt(S1 S2) = sum_i sqrt(lambda_i(F^T S2 F)). ``eigvalsh`` of a symmetric
matrix is real; round-off negatives are clipped to 0. F is U sqrt(L) from ``eigh(S1)``, or, when only
n <= 2048 samples were seen, the centred features / sqrt(n - 1) (an n x n problem instead of 2048^2).
"""

from __future__ import annotations

import os
import pathlib
import zipfile

import numpy as np
import scipy.linalg
import torch

from model.data.decode import read_rgb
from model.data.images import IMAGE_KINDS, is_image_file
from model.data.names import shown
from model.errors import DataError
from model.metrics.inception import FEATURE_DIM, extract_features

MIN_IMAGES = 2  # a covariance needs two samples; one gives NaN statistics


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean [D] and covariance [D, D] (unbiased, rows = samples), as pytorch-fid."""
    features = np.asarray(features, dtype=np.float64)
    return features.mean(axis=0), np.cov(features, rowvar=False)


def covariance_factor(sigma: np.ndarray) -> np.ndarray:
    """F [D, r] with F F^T = sigma (PSD), from its eigendecomposition; round-off eigenvalues dropped."""
    evals, evecs = scipy.linalg.eigh(sigma)
    keep = evals > max(evals.max(), 0.0) * len(evals) * np.finfo(np.float64).eps
    return evecs[:, keep] * np.sqrt(evals[keep])


def features_factor(features: np.ndarray) -> np.ndarray:
    """F [D, n] with F F^T = np.cov(features, rowvar=False)."""
    features = np.asarray(features, dtype=np.float64)
    return (features - features.mean(axis=0)).T / np.sqrt(len(features) - 1)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     factor1: np.ndarray | None = None) -> float:
    """FID between N(mu1, sigma1) and N(mu2, sigma2); ``factor1`` (F F^T = sigma1) skips an eigh."""
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise ValueError(f"shape mismatch: mu {mu1.shape} {mu2.shape}, sigma {sigma1.shape} {sigma2.shape}")
    if not all(np.isfinite(a).all() for a in (mu1, mu2, sigma1, sigma2)):
        raise ValueError("FID statistics contain NaN or infinite values")
    f = covariance_factor(sigma1) if factor1 is None else factor1
    m = f.T @ sigma2 @ f
    tr_covmean = np.sqrt(np.clip(scipy.linalg.eigvalsh((m + m.T) / 2), 0.0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean)


def fid_from_features(features1: np.ndarray, features2: np.ndarray) -> float:
    """FID of two feature sets [N, D]; uses the cheaper factor when a set has fewer samples than D."""
    (mu1, s1), (mu2, s2) = feature_stats(features1), feature_stats(features2)
    if len(features2) < len(features1):
        features1, mu1, s1, features2, mu2, s2 = features2, mu2, s2, features1, mu1, s1
    factor = features_factor(features1) if len(features1) <= features1.shape[1] else None
    return frechet_distance(mu1, s1, mu2, s2, factor1=factor)


def image_files(path: str | os.PathLike) -> list[pathlib.Path]:
    """The image files of a folder, as pytorch-fid lists them (not recursive, sorted, its extensions) but
    with the project's one extension list matched in any case (IMG_0001.JPG counts, and counts once)."""
    return sorted(f for f in pathlib.Path(path).iterdir() if is_image_file(f))


def _read_rgb(file: pathlib.Path) -> np.ndarray:
    # orient=False: pytorch-fid ignores EXIF rotation, and bench fid keeps its numbers.
    return np.asarray(read_rgb(file, orient=False), dtype=np.uint8)


def folder_features(path: str | os.PathLike, device: str | torch.device = "cpu",
                    batch_size: int = 50) -> np.ndarray:
    """Features float64 [N, 2048] of a folder's images, read as pytorch-fid does (PIL, [0, 1]) for 8-bit
    images; 16-bit and float images are scaled from their own range where pytorch-fid clips them
    (model/data/decode.py).

    pytorch-fid needs equal sizes within a batch; here runs of equal size are batched together, so
    mixed sizes also work (each image is resized to 299 inside the network anyway). Raises DataError for
    a folder with fewer than 2 images (FID is undefined) or an unreadable image.
    """
    files = image_files(path)
    if len(files) < MIN_IMAGES:
        found = "no images" if not files else "1 image"
        raise DataError(f"{shown(path)}: {found} ({IMAGE_KINDS}); FID needs at least {MIN_IMAGES} images per folder")
    chunks, run = [], []
    for f in files:  # every file through the one decoder (an over-large or corrupt one: DataError naming it)
        image = _read_rgb(f)
        if run and (len(run) == batch_size or image.shape != run[0].shape):
            chunks.append(extract_features(np.stack(run), device, batch_size))
            run = []
        run.append(image)
    chunks.append(extract_features(np.stack(run), device, batch_size))
    return np.concatenate(chunks)


def _load_npz(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, int | None]:
    """(mu, sigma, image count or None): pytorch-fid's files hold no count, ours (save_stats) add ``n``."""
    try:
        with np.load(path, allow_pickle=False) as f:
            mu, sigma = f["mu"][:], f["sigma"][:]
            n = int(f["n"]) if "n" in f.files else None
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(f"{shown(path)}: not a statistics file with 'mu' and 'sigma' ({err})") from err
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise DataError(f"{shown(path)}: 'mu' or 'sigma' holds NaN or infinite values "
                        f"(statistics of fewer than {MIN_IMAGES} images?); make them from a larger folder")
    return mu, sigma, n


def _stats_of(path: str | os.PathLike, device: str | torch.device, batch_size: int):
    """(mu, sigma, features or None, image count or None) of a folder of images or a .npz with mu/sigma."""
    if not os.path.exists(path):
        raise DataError(f"{shown(path)}: invalid path (no such folder or .npz file)")
    if str(path).endswith(".npz"):
        mu, sigma, n = _load_npz(path)
        return mu, sigma, None, n
    if not os.path.isdir(path):
        raise DataError(f"{shown(path)}: not a folder of images or a .npz file")
    feats = folder_features(path, device, batch_size)
    return (*feature_stats(feats), feats, len(feats))


def fid_with_count(path_a: str | os.PathLike, path_b: str | os.PathLike, device: str | torch.device = "cpu",
                   batch_size: int = 50) -> tuple[float, int | None]:
    """(FID, N): N is the smaller image count of the two sets where known (None for two pytorch-fid .npz
    files). Below 2048 images (the feature dimension) FID is biased upward: report it as FID@N."""
    mu_a, s_a, f_a, n_a = _stats_of(path_a, device, batch_size)
    mu_b, s_b, f_b, n_b = _stats_of(path_b, device, batch_size)
    n = min((c for c in (n_a, n_b) if c is not None), default=None)
    if f_a is not None and f_b is not None:
        return fid_from_features(f_a, f_b), n
    for feats, mu1, s1, mu2, s2 in ((f_a, mu_a, s_a, mu_b, s_b), (f_b, mu_b, s_b, mu_a, s_a)):
        if feats is not None and len(feats) <= feats.shape[1]:
            return frechet_distance(mu1, s1, mu2, s2, factor1=features_factor(feats)), n
    return frechet_distance(mu_a, s_a, mu_b, s_b), n


def fid_from_folders(path_a: str | os.PathLike, path_b: str | os.PathLike,
                     device: str | torch.device = "cpu", batch_size: int = 50) -> float:
    """``python -m pytorch_fid A B``: each path a folder of images or a .npz with ``mu``/``sigma``."""
    return fid_with_count(path_a, path_b, device, batch_size)[0]


def fid_label(n: int | None) -> str:
    """"FID@N" when N < 2048 images were seen (the project's reports say the same), else "FID"."""
    return f"FID@{n}" if n is not None and n < FEATURE_DIM else "FID"


def save_stats(path: str | os.PathLike, npz: str | os.PathLike, device: str | torch.device = "cpu",
               batch_size: int = 50) -> None:
    """``python -m pytorch_fid --save-stats FOLDER OUT``: refuses an existing output file; like
    ``np.savez_compressed`` it appends ``.npz`` to a name without it."""
    npz = npz if str(npz).endswith(".npz") else f"{npz}.npz"
    if os.path.exists(npz):
        raise DataError(f"{shown(npz)}: output file exists")
    mu, sigma, _, n = _stats_of(path, device, batch_size)
    tmp = f"{npz}.tmp{os.getpid()}"
    with open(tmp, "wb") as fh:  # a file object: savez appends nothing to the name
        # pytorch-fid reads mu and sigma only; n (the image count) lets `bench fid` print FID@N.
        np.savez_compressed(fh, mu=mu, sigma=sigma, **({} if n is None else {"n": np.int64(n)}))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, npz)
