"""Palette's image-to-image tasks: what the network sees (cond) and what it must generate (mask).

One interface for every task (diffusers-style): `task.make(y0, generators) -> (cond, mask)` with y0 the
clean targets [B, 3, H, W] in [-1, 1], cond [B, 3, H, W] and mask [B, 1, H, W] (1 = to generate).
Row i draws its mask and noise from generators[i] only, so a sample does not depend on its batch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from model.config import TaskConfig
from model.errors import ConfigError
from model.masks import Generators, make_masks, per_row

# ITU-R BT.601 luma; the weights sum to 1, so it maps [-1, 1] to [-1, 1].
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def _check(y0: torch.Tensor) -> None:
    if y0.ndim != 4 or y0.shape[1] != 3:
        raise ValueError(f"y0 must be [B, 3, H, W], got {tuple(y0.shape)}")


def noise_fill(y0: torch.Tensor, mask: torch.Tensor, generators: Generators) -> torch.Tensor:
    """Known pixels from y0, unknown ones filled with Gaussian noise (Palette's inpainting condition)."""
    noise = torch.stack(
        [torch.randn(y0.shape[1:], generator=g, device=g.device) for g in per_row(generators, len(y0))]
    ).to(device=y0.device, dtype=y0.dtype)
    return y0 * (1.0 - mask) + mask * noise


class Task(ABC):
    """Base class: `name` for reports, `make` for the data pipeline and the evaluation."""

    name = "task"

    @abstractmethod
    def make(self, y0: torch.Tensor, generators: Generators) -> tuple[torch.Tensor, torch.Tensor]:
        """(cond [B, 3, H, W], mask [B, 1, H, W]) for clean targets y0."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class Inpainting(Task):
    """Fill a hole (masks.MASKS kind: paper, center, free_form, irregular, bbox)."""

    def __init__(self, mask: str = "paper"):
        self.mask_kind = mask
        self.name = f"inpainting-{mask}"

    def make(self, y0, generators):
        _check(y0)
        size = tuple(y0.shape[-2:])
        mask = make_masks(self.mask_kind, size, generators, batch=len(y0)).to(y0.device, y0.dtype)
        return noise_fill(y0, mask, generators), mask


class Uncropping(Inpainting):
    """Extend the image: left/right/top/bottom half or a border frame hidden, or one of them at random."""

    def __init__(self, side: str = "random"):
        super().__init__(mask=side)
        self.name = f"uncropping-{side}"


class Colorization(Task):
    """Grey (BT.601 luma) input copied to 3 channels; every pixel's colour is generated (mask of ones)."""

    name = "colorization"

    def make(self, y0, generators=None):
        _check(y0)
        weights = torch.tensor(LUMA_WEIGHTS, device=y0.device, dtype=y0.dtype).view(1, 3, 1, 1)
        luma = (y0 * weights).sum(1, keepdim=True)
        return luma.expand(-1, 3, -1, -1).contiguous(), torch.ones_like(luma)


def make_task(cfg: TaskConfig) -> Task:
    if cfg.name == "inpainting":
        return Inpainting(cfg.mask)
    if cfg.name == "uncropping":
        return Uncropping(cfg.uncrop)
    if cfg.name == "colorization":
        return Colorization()
    raise ConfigError(f"task.name: unknown task '{cfg.name}'; use inpainting, colorization or uncropping")
