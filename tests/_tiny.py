"""A tiny UNet config shared by the core's tests (16 px, two levels, attention at 8)."""

from __future__ import annotations

from model.config import UNetConfig


def tiny_cfg(**overrides) -> UNetConfig:
    args = dict(base_channels=16, channel_mults=[1, 2], num_res_blocks=1, attn_resolutions=[8], head_channels=8,
                norm_groups=8)
    return UNetConfig(**(args | overrides))
