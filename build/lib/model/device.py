"""Device choice and mixed precision: the same code on CPU and CUDA."""

from __future__ import annotations

import contextlib

import torch

from .errors import ConfigError


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """'auto' picks CUDA when present, else the CPU; asking for CUDA without one is a clear error."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available here (use --device auto or cpu)")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise ConfigError(f"--device {name!r}: expected auto, cpu or cuda")
    return torch.device(name)


# cudnn.benchmark stays off. On an H100 (results/gpu/) it made the 256-px bf16 step 1.04x faster in NCHW and
# 0.99x in channels_last, but its autotuning cost 23-31 s on the first step of each new batch shape, charged
# to whichever trial of a study runs first: an order bias in the times this harness exists to compare.


def autocast_context(device: torch.device):
    """bf16 autocast where the device runs it natively (CUDA with bf16); plain fp32 elsewhere."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
