"""The Palette training objective (Saharia et al. 2022, eq. 1-2 and Algorithm 1).

One training step: draw a noise level gamma, noise the target image, ask the network for the noise.
    y_noisy = sqrt(gamma) * y0 + sqrt(1 - gamma) * eps                          (eq. 1)
    loss    = E || f(x, y_noisy, gamma) - eps ||_p^p,   p in {1, 2}             (eq. 2)
With `prediction` = "x0" or "v" the network is regressed onto y0 or v instead of eps (model/prediction.py);
eq. 1 is unchanged. Beyond the paper, the draw of gamma may follow another distribution (model/noise_levels.py)
and each image's loss may be weighted by its noise level (Min-SNR-gamma or P2, model/weighting.py).
All randomness comes from one torch.Generator, so a run is reproducible and resumable exactly.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from model.noise_levels import GammaSampler, sample_gamma  # noqa: F401 (sample_gamma re-exported)
from model.prediction import Prediction, training_target
from model.schedule import NoiseSchedule
from model.weighting import Weighting, loss_weights


def palette_loss(
    net: nn.Module,
    y0: torch.Tensor,
    cond: torch.Tensor,
    mask: torch.Tensor,
    schedule: NoiseSchedule,
    generator: torch.Generator,
    kind: Literal["l1", "l2"] = "l2",
    prediction: Prediction = "eps",
    draw_gamma: GammaSampler | None = None,
    weighting: Weighting = "none",
    min_snr_gamma: float = 5.0,
    p2_k: float = 1.0,
    p2_gamma: float = 1.0,
) -> torch.Tensor:
    """Mean |f(x, y_noisy, gamma) - target|^p over the unknown pixels (mask == 1) of a batch; a scalar.

    target is eps (Palette), y0 or v, as `prediction` says (model/prediction.py).
    y0, cond: [B, 3, H, W] in [-1, 1]; mask: [B, 1, H, W], 1 = to generate (all ones for colorization).
    draw_gamma: (B, generator) -> gamma [B] (model/noise_levels.py); None: Palette's uniform `sample_gamma`.
    weighting "none": the mean over all the batch's unknown pixels (Palette). "min_snr" / "p2": each image's mean
    over its own unknown pixels times its Min-SNR or P2 weight (model/weighting.py), then the mean over the B images
    (Hang et al. 2023, eq. 10), so model.distributed.scale_loss must count images (per_image=True).
    The known region enters the network clean, as at sampling time, and does not count in the loss.
    """
    if kind not in ("l1", "l2"):
        raise ValueError(f"loss kind must be 'l1' or 'l2', got {kind!r}")
    # Drawn on the generator's device (the trainer's lives with the batch), then moved to the data.
    if draw_gamma is None:
        gamma = sample_gamma(schedule, y0.shape[0], generator)
    else:
        gamma = draw_gamma(y0.shape[0], generator)
    gamma = gamma.to(y0.device)
    eps = torch.randn(y0.shape, generator=generator, device=generator.device, dtype=y0.dtype).to(y0.device)
    g = gamma.view(-1, 1, 1, 1)
    y_noisy = g.sqrt() * y0 + (1 - g).sqrt() * eps  # eq. 1
    output = net(torch.cat([cond, y_noisy * mask + y0 * (1 - mask)], dim=1), gamma)
    err = output.float() - training_target(prediction, y0, eps, g)
    err = err.abs() if kind == "l1" else err.square()
    # Multiply, not index: a mask of 0 removes a pixel from the loss and from the gradient exactly.
    weights = loss_weights(gamma, weighting, prediction, min_snr_gamma, p2_k, p2_gamma)
    if weights is None:
        return (err * mask).sum() / (mask.sum() * err.shape[1]).clamp(min=1)
    per_image = (err * mask).sum(dim=(1, 2, 3)) / (mask.sum(dim=(1, 2, 3)) * err.shape[1]).clamp(min=1)
    return (weights * per_image).mean()
