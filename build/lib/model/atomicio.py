"""Atomic file writes (all or nothing) and the JSON files of runs and trials.

A writer fills `.<name>.tmp-<pid>` beside the target, fsyncs it and renames it over the target, so a kill at
any moment leaves either the old file or the new one; `remove_stale_temporaries` clears what killed writers
left. Used by checkpoints, the trainer's history and the harness's records (bench/ imports it from here).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from .faults import fault


def atomic_write_bytes(path: Path, write, fault_site: str | None = None) -> None:
    """Call `write(file)` on a temporary file, fsync it, then rename it over `path` (all or nothing).

    `fault_site`: the name under which model.faults may kill the process between the write and the rename.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if fault_site is not None:
            fault(fault_site, path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself survives a power loss
    finally:
        os.close(dir_fd)


_TMP = re.compile(r"^\..+\.tmp-(\d+)$")


def remove_stale_temporaries(directory: Path) -> list[Path]:
    """Delete the temporary files (`.<name>.tmp-<pid>`) that a killed writer left in `directory`.

    Only files whose writer process is gone are removed, so a live writer's file is never touched.
    """
    removed = []
    directory = Path(directory)
    if not directory.is_dir():
        return removed
    for p in directory.iterdir():
        m = _TMP.match(p.name)
        if not m or int(m.group(1)) == os.getpid():
            continue
        try:
            os.kill(int(m.group(1)), 0)
            continue  # its writer is alive
        except ProcessLookupError:
            pass
        except PermissionError:
            continue  # alive, another user's
        p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def write_json(path: Path, obj) -> None:
    """Write `obj` as indented JSON to `path` atomically (values JSON cannot hold are written with str())."""
    atomic_write_bytes(Path(path), lambda f: f.write(json.dumps(obj, indent=2, default=str).encode()))
