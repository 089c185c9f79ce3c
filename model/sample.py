"""The shared sampling loop: start from noise, step the sampler down to gamma = 1, keep known pixels fixed.

Every random number of sample i comes from generators[i] (edm), so sample i is the same whatever the batch
it is drawn in. The known region (mask == 0) is pasted back after every step, so it enters the network
clean, as in training (model/objective.py), and the output equals y_known there exactly.
"""

from __future__ import annotations

import torch
from torch import nn

from model.samplers import Sampler


def randn_per_sample(shape: tuple[int, ...], generators: list[torch.Generator], device) -> torch.Tensor:
    """N(0, I) of `shape`, row i drawn from generators[i] alone."""
    if len(generators) != shape[0]:
        raise ValueError(f"need one generator per sample: {len(generators)} generators, batch {shape[0]}")
    return torch.stack([torch.randn(shape[1:], generator=g, device=device) for g in generators])


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
    With return_intermediates, also returns the states y_T, ..., y_0 every `intermediate_every` steps
    (default: about 8 frames) plus the final one, raw (not clamped), for the denoising strip (Fig. 9).
    """
    out_shape = (cond.shape[0], y_known.shape[1], *cond.shape[2:])

    def paste(y):  # exact where mask == 0: y * 0 + y_known * 1
        return y * mask + y_known * (1 - mask)

    y = paste(randn_per_sample(out_shape, generators, cond.device))
    pairs = sampler.gamma_pairs()
    every = intermediate_every or max(1, len(pairs) // 8)
    intermediates = [y.clone()] if return_intermediates else []
    for i, (gamma_t, gamma_prev) in enumerate(pairs):
        gamma = torch.full((y.shape[0],), gamma_t, device=y.device, dtype=torch.float32)
        output = net(torch.cat([cond, y], dim=1), gamma).float()  # eps, x0 or v: the sampler converts it
        noise = randn_per_sample(out_shape, generators, y.device)
        y = paste(sampler.step(output, y, gamma_t, gamma_prev, noise))
        if return_intermediates and ((i + 1) % every == 0 or i + 1 == len(pairs)):
            intermediates.append(y.clone())
    y = paste(y.clamp(-1.0, 1.0))
    return (y, intermediates) if return_intermediates else y
