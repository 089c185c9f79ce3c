"""Per-image loss weights over the noise level: Min-SNR-gamma (Hang et al., ICCV 2023).

With SNR = gamma / (1 - gamma) (gamma = alpha_bar, Palette's noise level) and the clamp k (the paper's gamma,
`diffusion.min_snr_gamma`, 5 by default), the paper weights the x0-error by min(SNR, k) (its eq. 8). The same
weight expressed for the target the network regresses (its eq. 9-10; model/prediction.py):
    eps   ||eps_hat - eps||^2 = SNR ||x0_hat - x0||^2          -> w = min(SNR, k) / SNR     = min(1, k / SNR)
    x0                                                          -> w = min(SNR, k)
    v     ||v_hat - v||^2 = (SNR + 1) ||x0_hat - x0||^2         -> w = min(SNR, k) / (SNR + 1)
Written without a division that can meet 0/0 or inf/inf, so each is finite on all of gamma in [0, 1]:
    eps   min(1, k (1 - gamma) / gamma)       (1 at gamma -> 0, -> 0 at gamma -> 1)
    x0    min(gamma / (1 - gamma), k)         (0 at gamma -> 0, k at gamma -> 1)
    v     min(gamma, k (1 - gamma))           (0 at both ends; 1 / (SNR + 1) = 1 - gamma)
Computed in float64 from the float32 gamma the network is given, so 1 - gamma is exact near 1.
"""

from __future__ import annotations

from typing import Literal

import torch

from model.prediction import PREDICTIONS, Prediction

Weighting = Literal["none", "min_snr"]


def snr(gamma: torch.Tensor) -> torch.Tensor:
    """Signal-to-noise ratio gamma / (1 - gamma), float64 (inf at gamma = 1)."""
    g = gamma.double()
    return g / (1 - g)


def min_snr_weight(gamma: torch.Tensor, prediction: Prediction, k: float = 5.0) -> torch.Tensor:
    """Min-SNR-k weight of each image's loss, for the network's `prediction` target; float32 shaped like gamma.

    gamma: noise levels in [0, 1], any shape. Raises ValueError for an unknown prediction or k <= 0.
    """
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {', '.join(PREDICTIONS)}, got {prediction!r}")
    if not k > 0:
        raise ValueError(f"diffusion.min_snr_gamma must be > 0, got {k}")
    g = gamma.double()
    if prediction == "eps":
        w = torch.clamp(k * (1 - g) / g, max=1.0)  # k / 0 = inf at gamma = 0, clamped to 1
    elif prediction == "x0":
        w = torch.clamp(g / (1 - g), max=k)
    else:  # v
        w = torch.minimum(g, k * (1 - g))
    return w.float()


def loss_weights(gamma: torch.Tensor, weighting: Weighting, prediction: Prediction, k: float = 5.0
                 ) -> torch.Tensor | None:
    """The per-image weights `diffusion.loss_weighting` names, or None for "none" (Palette's plain mean)."""
    if weighting == "none":
        return None
    if weighting == "min_snr":
        return min_snr_weight(gamma, prediction, k)
    raise ValueError(f"diffusion.loss_weighting must be none or min_snr, got {weighting!r}")
