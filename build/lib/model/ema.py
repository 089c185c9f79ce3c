"""Exponential moving average of the weights (Palette: decay 0.9999), on torch.optim.swa_utils."""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel


def _ema_update(decay: float, warmup: bool):
    @torch.no_grad()
    def update(ema_params, model_params, n_averaged):
        # n_averaged counts the updates so far; the warm-up keeps the EMA from freezing at the init.
        d = min(decay, (1.0 + float(n_averaged)) / (10.0 + float(n_averaged))) if warmup else decay
        torch._foreach_lerp_(ema_params, model_params, 1.0 - d)

    return update


def make_ema(net: nn.Module, decay: float, warmup: bool = True) -> AveragedModel:
    """EMA copy of `net` (parameters and buffers); call `.update_parameters(net)` after each step."""
    ema = AveragedModel(net, multi_avg_fn=_ema_update(decay, warmup), use_buffers=True)
    ema.requires_grad_(False)
    return ema
