"""Adam with a linear learning-rate warm-up (Palette), the warm-up counted in images seen (edm)."""

from __future__ import annotations

import torch
from torch import nn

from .config import TrainConfig


def make_optimizer(net: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    # foreach kernels: one fused launch per parameter group instead of one per tensor.
    return torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)


def make_warmup(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """LR factor rises linearly from ~0 to 1 over `cfg.warmup_images` images; stepped once per batch."""
    warmup_steps = max(1, cfg.warmup_images // cfg.batch_size)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup_steps))
