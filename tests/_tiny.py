"""A tiny UNet config shared by the core's tests (16 px, two levels, attention at 8)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from model.config import UNetConfig


def tiny_cfg(**overrides) -> UNetConfig:
    args = dict(base_channels=16, channel_mults=[1, 2], num_res_blocks=1, attn_resolutions=[8], head_channels=8,
                norm_groups=8)
    return UNetConfig(**(args | overrides))


def eight_masked_images(size: int = 16) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(y0, cond, mask) of 8 smooth random images in [-1, 1] with a square hole: what a tiny UNet can over-fit."""
    y0 = F.interpolate(torch.rand(8, 3, 4, 4) * 2 - 1, size=size, mode="bilinear", align_corners=False)
    mask = torch.zeros(8, 1, size, size)
    mask[:, :, size // 4:3 * size // 4, size // 4:3 * size // 4] = 1
    return y0, y0 * (1 - mask), mask
