"""The decoded uint8 cache: one .npz per (source, folder, settings, split, file list) under cache_dir.

The key holds a fingerprint of the file list (names, sizes, mtimes), so a changed folder rebuilds; writes go
to a temporary file renamed into place, so a crash or a concurrent reader never sees half a cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from model.data.names import name_bytes

# Bump when decoding or cropping changes, so old caches are not reused. 2: 16-bit / float images scaled
# from their own range instead of clipped (decode.py).
CACHE_VERSION = 2
CACHE_ENV = "PALETTE_BENCH_CACHE"


def cache_root(cache_dir: str | None) -> Path:
    """data.cache_dir, else $PALETTE_BENCH_CACHE, else ~/.cache/palette-bench (shared by all runs)."""
    chosen = cache_dir or os.environ.get(CACHE_ENV) or "~/.cache/palette-bench"
    return Path(chosen).expanduser().resolve()


def fingerprint(files: list[Path]) -> str:
    digest = hashlib.sha1()
    for path in sorted(files):
        st = path.stat()
        digest.update(name_bytes(path) + f"\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def names_digest(names: list[str]) -> str:
    return hashlib.sha1(b"\n".join(name_bytes(n) for n in names)).hexdigest()


def cache_path(root: Path, prefix: str, key: dict) -> Path:
    """`key`: everything that changes the arrays; `prefix` only makes file names readable."""
    digest = hashlib.sha1(json.dumps({"version": CACHE_VERSION, **key}, sort_keys=True).encode()).hexdigest()
    return root / "images" / f"{prefix}-{digest[:16]}.npz"


def load(path: Path) -> tuple[np.ndarray, list[str], dict] | None:
    """(images, names, stats), or None when there is no usable cache (missing or damaged: rebuilt)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return z["images"], [str(n) for n in z["names"]], json.loads(str(z["stats"]))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None


def save(path: Path, images: np.ndarray, names: list[str], stats: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, images=images, names=np.array(names, dtype=str), stats=np.array(json.dumps(stats)))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache is shared by runs and users
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
