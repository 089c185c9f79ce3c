"""What the network predicts, and the one place its output is converted to the clean image and the noise.

With the noisy target (Palette eq. 1, gamma = alpha_bar):
    y_t = sqrt(gamma) * x0 + sqrt(1 - gamma) * eps
the network may be trained to predict
    eps  the noise (Ho et al. 2020; Palette eq. 2; the paper's and Palette's choice)
    x0   the clean target itself
    v    sqrt(gamma) * eps - sqrt(1 - gamma) * x0      (Salimans & Ho 2022, "Progressive Distillation", sec. 4)
Each one determines the other two given y_t and gamma:
    from eps:  x0 = (y_t - sqrt(1 - gamma) * eps) / sqrt(gamma)
    from x0:   eps = (y_t - sqrt(gamma) * x0) / sqrt(1 - gamma)
    from v:    x0 = sqrt(gamma) * y_t - sqrt(1 - gamma) * v,   eps = sqrt(1 - gamma) * y_t + sqrt(gamma) * v
Why it matters: at the noisiest level (gamma = alpha_bar_T ~ 1e-4 for Palette's schedules) an eps-predictor's
x0 estimate divides its error by sqrt(gamma) ~ 0.01, so a small model that has not learned eps to 1% leaves
global colour casts; x0 and v keep the x0 estimate bounded at every gamma (shared/FACTS.md: KID x10^3 136 with
eps against 16-19 with x0 or v, same training budget).
"""

from __future__ import annotations

import math
from typing import Literal

import torch

Prediction = Literal["eps", "v", "x0"]
PREDICTIONS: tuple[str, ...] = ("eps", "v", "x0")


def _check(prediction: str) -> None:
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {', '.join(PREDICTIONS)}, got {prediction!r}")


def training_target(prediction: Prediction, x0: torch.Tensor, eps: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """What the network is regressed onto: eps, x0 or v, each [B, C, H, W].

    x0, eps: [B, C, H, W]; gamma: [B, 1, 1, 1] (or broadcastable), noise level in (0, 1].
    """
    _check(prediction)
    if prediction == "eps":
        return eps
    if prediction == "x0":
        return x0
    return gamma.sqrt() * eps - (1 - gamma).sqrt() * x0  # v


def to_x0_eps(
    prediction: Prediction, output: torch.Tensor, y_t: torch.Tensor, gamma: float | torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The network's output at noise level gamma read as (x0_hat, eps_hat), both shaped like y_t.

    gamma: a float or a tensor broadcastable to y_t, in (0, 1). At gamma == 1 (no noise) eps is undefined
    for the x0 target; the samplers never ask for it there (their last step starts below 1).
    """
    _check(prediction)
    if isinstance(gamma, torch.Tensor):  # 1 - gamma in float64: gamma ~ 1 - 1e-6 loses 6% of it in float32
        g = gamma.double()
        sg, s1g = g.sqrt().to(y_t.dtype), (1 - g).sqrt().to(y_t.dtype)
    else:
        sg, s1g = math.sqrt(gamma), math.sqrt(1.0 - gamma)
    if prediction == "eps":
        return (y_t - s1g * output) / sg, output
    if prediction == "x0":
        return output, (y_t - sg * output) / s1g
    return sg * y_t - s1g * output, s1g * y_t + sg * output  # v
