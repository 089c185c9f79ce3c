"""Per-image loss weights over the noise level: Min-SNR-gamma (Hang et al., ICCV 2023) and P2 (Choi et al.,
CVPR 2022).

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

P2 ("Perception Prioritized Training of Diffusion Models", eq. 8) weights L_simple, the eps-error, by
1 / (k + SNR)^g (the paper's k = 1; g = 1 in most of its runs, 0.5 in some; g = 0 is L_simple). Each target's
error is the eps-error times a factor of SNR (x0: 1 / SNR, v: (SNR + 1) / SNR), so the same weighting reads
    eps   w = 1 / (k + SNR)^g                 = ((1 - gamma) / (k (1 - gamma) + gamma))^g
    x0    w = SNR / (k + SNR)^g               = gamma (1 - gamma)^(g - 1) / (k (1 - gamma) + gamma)^g
    v     w = SNR / ((SNR + 1) (k + SNR)^g)   = gamma ((1 - gamma) / (k (1 - gamma) + gamma))^g
finite on all of gamma in [0, 1] (k > 0) except x0 with g < 1 at gamma = 1, where SNR^(1 - g) itself diverges;
no training level reaches gamma = 1 (the schedule's gamma_1 < 1).
"""

from __future__ import annotations

from typing import Literal

import torch

from model.prediction import PREDICTIONS, Prediction

Weighting = Literal["none", "min_snr", "p2"]


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


def p2_weight(gamma: torch.Tensor, prediction: Prediction, k: float = 1.0, g: float = 1.0) -> torch.Tensor:
    """P2 weight 1 / (k + SNR)^g of each image's eps-error, for the network's `prediction` target; float32 shaped
    like gamma. gamma: noise levels in [0, 1], any shape. Raises ValueError for an unknown prediction, k <= 0 or
    g < 0."""
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {', '.join(PREDICTIONS)}, got {prediction!r}")
    if not k > 0:
        raise ValueError(f"diffusion.p2_k must be > 0, got {k}")
    if not g >= 0:
        raise ValueError(f"diffusion.p2_gamma must be >= 0, got {g}")
    x = gamma.double()
    denom = k * (1 - x) + x  # (k + SNR)(1 - gamma): >= min(k, 1) > 0
    if prediction == "eps":
        w = ((1 - x) / denom) ** g
    elif prediction == "x0":
        w = x * (1 - x) ** (g - 1) / denom ** g
    else:  # v
        w = x * ((1 - x) / denom) ** g
    return w.float()


def loss_weights(gamma: torch.Tensor, weighting: Weighting, prediction: Prediction, k: float = 5.0,
                 p2_k: float = 1.0, p2_gamma: float = 1.0) -> torch.Tensor | None:
    """The per-image weights `diffusion.loss_weighting` names, or None for "none" (Palette's plain mean).
    k: Min-SNR's clamp (diffusion.min_snr_gamma); p2_k, p2_gamma: P2's k and exponent (diffusion.p2_*)."""
    if weighting == "none":
        return None
    if weighting == "min_snr":
        return min_snr_weight(gamma, prediction, k)
    if weighting == "p2":
        return p2_weight(gamma, prediction, p2_k, p2_gamma)
    raise ValueError(f"diffusion.loss_weighting must be none, min_snr or p2, got {weighting!r}")
