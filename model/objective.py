"""The Palette training objective (Saharia et al. 2022, eq. 1-2 and Algorithm 1).

One training step: draw a noise level gamma, noise the target image, ask the network for the noise.
    y_noisy = sqrt(gamma) * y0 + sqrt(1 - gamma) * eps                          (eq. 1)
    loss    = E || f(x, y_noisy, gamma) - eps ||_p^p,   p in {1, 2}             (eq. 2)
With `prediction` = "x0" or "v" the network is regressed onto y0 or v instead of eps (model/prediction.py);
eq. 1 and the gamma draw are unchanged.
All randomness comes from one torch.Generator, so a run is reproducible and resumable exactly.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from model.prediction import Prediction, training_target
from model.schedule import NoiseSchedule


def sample_gamma(
    schedule: NoiseSchedule, batch: int, generator: torch.Generator, return_t: bool = False
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """t ~ U{1..T}, then gamma ~ U(gammas[t], gammas[t-1]): a continuous noise level (Palette, WaveGrad).

    Returns float32 [B] on the generator's device, and with return_t=True also the int64 steps t [B].
    """
    device = generator.device
    gammas = schedule.gammas.to(device)
    t = torch.randint(1, schedule.timesteps + 1, (batch,), generator=generator, device=device)
    u = torch.rand(batch, generator=generator, device=device, dtype=torch.float64)
    gamma = (gammas[t] + u * (gammas[t - 1] - gammas[t])).float()  # float64 first: gammas[t] ~ 1 - 1e-6
    return (gamma, t) if return_t else gamma


def palette_loss(
    net: nn.Module,
    y0: torch.Tensor,
    cond: torch.Tensor,
    mask: torch.Tensor,
    schedule: NoiseSchedule,
    generator: torch.Generator,
    kind: Literal["l1", "l2"] = "l2",
    prediction: Prediction = "eps",
) -> torch.Tensor:
    """Mean |f(x, y_noisy, gamma) - target|^p over the unknown pixels (mask == 1) of a batch; a scalar.

    target is eps (Palette), y0 or v, as `prediction` says (model/prediction.py).
    y0, cond: [B, 3, H, W] in [-1, 1]; mask: [B, 1, H, W], 1 = to generate (all ones for colorization).
    The known region enters the network clean, as at sampling time, and does not count in the loss.
    """
    if kind not in ("l1", "l2"):
        raise ValueError(f"loss kind must be 'l1' or 'l2', got {kind!r}")
    # Drawn on the generator's device (the trainer's lives with the batch), then moved to the data.
    gamma = sample_gamma(schedule, y0.shape[0], generator).to(y0.device)
    eps = torch.randn(y0.shape, generator=generator, device=generator.device, dtype=y0.dtype).to(y0.device)
    g = gamma.view(-1, 1, 1, 1)
    y_noisy = g.sqrt() * y0 + (1 - g).sqrt() * eps  # eq. 1
    output = net(torch.cat([cond, y_noisy * mask + y0 * (1 - mask)], dim=1), gamma)
    err = output.float() - training_target(prediction, y0, eps, g)
    err = err.abs() if kind == "l1" else err.square()
    # Multiply, not index: a mask of 0 removes a pixel from the loss and from the gradient exactly.
    return (err * mask).sum() / (mask.sum() * err.shape[1]).clamp(min=1)
