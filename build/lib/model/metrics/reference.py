"""Reference Inception statistics of a dataset split, computed once and cached as .npz.

The cache file is ``<cache_dir>/ref-<sha256[:16]>.npz``, the hash taken over the caller's key (e.g.
source, split, image size, sample count), the image array's shape, a SHA-256 of its pixels (a folder whose
photos were replaced, same count and names, must not reuse the old statistics) and ``FORMAT``. It holds ``mu``,
``sigma``, ``features`` (float64) and ``key`` (the JSON that was hashed, checked on load). Writes are
atomic (temporary file, fsync, ``os.replace``); an unreadable or mismatching file is recomputed.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile

import numpy as np
import torch

from model.errors import DataError
from model.metrics.fid import MIN_IMAGES, feature_stats
from model.metrics.inception import extract_features

# v2: images decoded by model/data/decode.py (16-bit / float scaled from their own range, not clipped).
FORMAT = "pool3-2048/pytorch-fid-inception-2015-12-05/v2"


def pixels_digest(images: np.ndarray) -> str:
    """SHA-256 (hex) of an image array's bytes: about 1 s per GB, small beside Inception on the same images."""
    return hashlib.sha256(np.ascontiguousarray(images).data).hexdigest()


def cache_key(key: dict, images: np.ndarray) -> str:
    """Canonical JSON of what the statistics depend on (raises TypeError if not JSON-serialisable)."""
    return json.dumps({"key": key, "shape": list(images.shape), "pixels": pixels_digest(images), "format": FORMAT},
                      sort_keys=True)


def cache_path(key: dict, images: np.ndarray, cache_dir: str | os.PathLike) -> str:
    return _path(cache_key(key, images), cache_dir)


def _path(expected_key: str, cache_dir: str | os.PathLike) -> str:
    return os.path.join(cache_dir, f"ref-{hashlib.sha256(expected_key.encode()).hexdigest()[:16]}.npz")


def _load(path: str, expected_key: str) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as f:
            if str(f["key"]) != expected_key:
                return None
            return {name: f[name] for name in ("mu", "sigma", "features")}
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
        return None


def _atomic_savez(path: str, **arrays: np.ndarray) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def reference_stats(images_uint8: np.ndarray, key: dict, cache_dir: str | os.PathLike,
                    device: str | torch.device = "cpu", batch_size: int = 50) -> dict[str, np.ndarray]:
    """``{"mu": [2048], "sigma": [2048, 2048], "features": [N, 2048]}`` of uint8 NHWC images.

    Loaded from ``cache_dir`` when present for this key and these pixels, else computed and saved. Raises
    DataError for fewer than 2 images (no covariance), ValueError for arrays of another type or shape.
    """
    images_uint8 = np.asarray(images_uint8)
    if images_uint8.dtype != np.uint8 or images_uint8.ndim != 4:
        raise ValueError(f"expected uint8 NHWC images, got {images_uint8.dtype} {images_uint8.shape}")
    if len(images_uint8) < MIN_IMAGES:
        raise DataError(f"reference statistics need at least {MIN_IMAGES} images, got {len(images_uint8)} "
                        f"(key {key}); evaluate on more samples")
    expected = cache_key(key, images_uint8)
    path = _path(expected, cache_dir)
    if os.path.exists(path) and (cached := _load(path, expected)) is not None:
        return cached
    features = extract_features(images_uint8, device, batch_size)
    mu, sigma = feature_stats(features)
    os.makedirs(cache_dir, exist_ok=True)
    _atomic_savez(path, mu=mu, sigma=sigma, features=features, key=np.array(expected))
    return {"mu": mu, "sigma": sigma, "features": features}
