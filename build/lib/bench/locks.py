"""File locks (flock) that make several `bench run` workers on one machine share a study safely.

A lock dies with its process, so a worker killed with SIGKILL never leaves a stale claim behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path


@contextlib.contextmanager
def file_lock(path: Path, blocking: bool = True):
    """Hold an exclusive lock on `path` (created if needed); yields False if non-blocking and taken."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def is_locked(path: Path) -> bool:
    """True while another process holds the lock on `path`."""
    if not Path(path).exists():
        return False
    with file_lock(path, blocking=False) as got:
        return not got
