"""Checkpoints: one self-describing dict, written atomically, loaded with `weights_only=True`.

A checkpoint holds the network, EMA, optimiser, LR scheduler, every RNG state, the position in the
data order and the accounting, so a resumed run continues bitwise as if it had never stopped.
Only tensors and plain Python values go in, so nothing in the file can execute on load.
"""

from __future__ import annotations

import pickle
import random
import re
import zipfile
from pathlib import Path

import numpy as np
import torch

from .atomicio import atomic_write_bytes, remove_stale_temporaries  # noqa: F401 (re-exported)
from .errors import CheckpointError

FORMAT = "palette-bench-checkpoint/1"
_NAME = re.compile(r"^ckpt-(\d{10})\.pt$")
_REQUIRED = ("format", "config", "net", "ema", "optimizer", "scheduler", "rng", "progress", "history")


def rng_state(generator: torch.Generator) -> dict:
    """Every RNG a training step may touch, as tensors and plain values (safe for weights_only)."""
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "generator": generator.get_state(),  # a CPU byte tensor, also for a CUDA generator
        "generator_device": generator.device.type,
        "numpy": {"keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "gauss": float(np_gauss), "kind": np_kind},
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, generator: torch.Generator, reseed: int) -> bool:
    """Restore the RNGs; True when the training generator continues its stream exactly.

    A CPU and a CUDA generator have different states (Mersenne Twister vs Philox), so a run resumed on the
    other kind of device cannot continue the stream: its generator is seeded with `reseed` instead (the
    caller derives it from the seed and the step) and the run goes on, valid but not bitwise the same."""
    torch.set_rng_state(state["torch"])
    exact = state.get("generator_device", "cpu") == generator.device.type
    if exact:
        generator.set_state(state["generator"])
    else:
        generator.manual_seed(reseed)
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():  # the first GPUs, if this machine has fewer
        torch.cuda.set_rng_state_all(state["cuda"][:torch.cuda.device_count()])
    return exact


def save_checkpoint(directory: Path, step: int, payload: dict, keep: int) -> Path:
    """Write `ckpt-<step>.pt` atomically and delete all but the newest `keep` checkpoints."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"ckpt-{step:010d}.pt"
    atomic_write_bytes(path, lambda f: torch.save({"format": FORMAT, **payload}, f), fault_site="checkpoint-rename")
    for old in list_checkpoints(directory)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def list_checkpoints(directory: Path) -> list[Path]:
    """Complete checkpoints, oldest first (temporary files of an interrupted write are ignored)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if _NAME.match(p.name))


def latest_checkpoint(directory: Path) -> Path | None:
    found = list_checkpoints(directory)
    return found[-1] if found else None


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    """Load a checkpoint safely; any damage is a CheckpointError naming the file, never a deep crash."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: refused to load: the file holds more than weights ({first[:160]})") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupt: {first[:160]})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a palette-bench checkpoint (expected format '{FORMAT}')")
    missing = [k for k in _REQUIRED if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: checkpoint is missing {', '.join(missing)}")
    return ckpt
