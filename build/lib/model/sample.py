"""The shared sampling loop: start from noise, step the sampler down to gamma = 1, keep known pixels fixed.

Every random number of sample i comes from generators[i] (edm), so sample i is the same whatever the batch
it is drawn in. The known region (mask == 0) is pasted back after every step, so it enters the network
clean, as in training (model/objective.py), and the output equals y_known there exactly.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from model.samplers import Sampler


def randn_per_sample(shape: tuple[int, ...], generators: list[torch.Generator], device) -> torch.Tensor:
    """N(0, I) of `shape`, row i drawn from generators[i] alone."""
    if len(generators) != shape[0]:
        raise ValueError(f"need one generator per sample: {len(generators)} generators, batch {shape[0]}")
    return torch.stack([torch.randn(shape[1:], generator=g, device=device) for g in generators])


STRIP_LOG_SNR = (-2.5, 6.0)  # where the picture forms: below, a frame is noise to the eye; above, frames barely change


def strip_steps(pairs: list[tuple[float, float]], frames: int = 8) -> set[int]:
    """Indices of the steps after which the denoising strip (Palette Fig. 9) keeps a frame: the steps whose
    output level is nearest to `frames` levels evenly spaced in log-SNR = log(gamma / (1 - gamma)) (Kingma et
    al. 2021, VDM) over STRIP_LOG_SNR, and the last step. Evenly spaced steps would show mostly noise: the
    picture forms in the last few steps of the usual schedules."""
    if not pairs:
        return set()

    def log_snr(g: float) -> float:
        g = min(max(g, 1e-12), 1 - 1e-12)
        return math.log(g) - math.log1p(-g)

    levels = [log_snr(g_prev) for _, g_prev in pairs[:-1]]  # the last step ends at gamma = 1 (kept anyway)
    lo, hi = STRIP_LOG_SNR
    targets = [lo + (hi - lo) * k / max(1, frames - 1) for k in range(frames)]
    chosen = {min(range(len(levels)), key=lambda i: abs(levels[i] - t)) for t in targets} if levels else set()
    return chosen | {len(pairs) - 1}


@torch.inference_mode()
def sample(
    net: nn.Module,
    cond: torch.Tensor,
    mask: torch.Tensor,
    y_known: torch.Tensor,
    sampler: Sampler,
    generators: list[torch.Generator],
    return_intermediates: bool = False,
    intermediate_every: int | None = None,
) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
    """Generate y [B, 3, H, W] in [-1, 1] given the condition (Palette's reverse process).

    cond: [B, 3, H, W] network condition; mask: [B, 1, H, W], 1 = generate, 0 = keep y_known;
    y_known: [B, 3, H, W] the known pixels (anything where mask is 1). Put `net` in eval mode first.
    With return_intermediates, also returns the states y_T, ..., y_0, raw (not clamped), for the denoising
    strip (Fig. 9): every `intermediate_every` steps plus the final one, or by default about 8 frames spaced
    evenly in log-SNR (strip_steps).
    """
    out_shape = (cond.shape[0], y_known.shape[1], *cond.shape[2:])

    def paste(y):  # exact where mask == 0: y * 0 + y_known * 1
        return y * mask + y_known * (1 - mask)

    y = paste(randn_per_sample(out_shape, generators, cond.device))
    pairs = sampler.gamma_pairs()
    keep = set(range(intermediate_every - 1, len(pairs), intermediate_every)) if intermediate_every else \
        strip_steps(pairs)
    intermediates = [y.clone()] if return_intermediates else []
    for i, (gamma_t, gamma_prev) in enumerate(pairs):
        gamma = torch.full((y.shape[0],), gamma_t, device=y.device, dtype=torch.float32)
        output = net(torch.cat([cond, y], dim=1), gamma).float()  # eps, x0 or v: the sampler converts it
        noise = randn_per_sample(out_shape, generators, y.device)
        y = paste(sampler.step(output, y, gamma_t, gamma_prev, noise))
        if return_intermediates and (i in keep or i + 1 == len(pairs)):
            intermediates.append(y.clone())
    y = paste(y.clamp(-1.0, 1.0))
    return (y, intermediates) if return_intermediates else y
