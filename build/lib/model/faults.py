"""Fault injection for the reliability tests: a no-op unless PALETTE_BENCH_FAULT is set.

    PALETTE_BENCH_FAULT=<site>:<count>[:<action>][,<site>:<count>[:<action>]...]

When this process reaches `site` for the count-th time (counted per process, from 1), it does `action`:

    kill    (default) os.kill(os.getpid(), SIGKILL): a preempted session, the OOM killer, a pulled plug
    enospc  raise OSError(ENOSPC) naming the file being written: a full disk
    nan     (the `loss` site only) the value becomes NaN: a diverged step

Sites, in the order a trial meets them:

    loss               the training loss of a step, before backward (poison site: use `nan`)
    train-step         after a training step's optimiser and EMA update, before any checkpoint
    checkpoint-rename  a checkpoint's temporary file is written and fsynced, not yet renamed into place
    checkpoint-saved   the checkpoint is in place, history.json not yet rewritten
    evaluate           an evaluation has run (samples written), its metrics are not yet checkpointed
    trial-finish       trial.json (the trial's done marker) is written, Optuna not yet told
    records-rename     records.csv / trials.csv temporary file written, not yet renamed (1st: records.csv)

Example: `PALETTE_BENCH_FAULT=evaluate:2 bench run ...` dies in the second evaluation of that process.
"""

from __future__ import annotations

import errno
import math
import os
import signal
from collections import Counter

ENV = "PALETTE_BENCH_FAULT"
SITES = ("loss", "train-step", "checkpoint-rename", "checkpoint-saved", "evaluate", "trial-finish",
         "records-rename")
_reached: Counter = Counter()


def _armed(site: str) -> str | None:
    """The action to take at this arrival at `site`, or None (counts the arrival when the variable is set)."""
    spec = os.environ.get(ENV)
    if not spec:
        return None
    _reached[site] += 1
    for entry in spec.split(","):
        parts = entry.strip().split(":")
        if len(parts) < 2 or parts[0] != site:
            continue
        try:
            count = int(parts[1])
        except ValueError:
            continue
        if _reached[site] == count:
            return parts[2] if len(parts) > 2 else "kill"
    return None


def fault(site: str, path: str | os.PathLike | None = None) -> None:
    """Die or fail here if PALETTE_BENCH_FAULT asks for it (see the module docstring)."""
    action = _armed(site)
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "enospc":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), None if path is None else str(path))


def poison(site: str, value):
    """`value`, or NaN times it when PALETTE_BENCH_FAULT asks for `<site>:<count>:nan` (kill/enospc also work)."""
    action = _armed(site)
    if action == "nan":
        return value * math.nan
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "enospc":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return value
