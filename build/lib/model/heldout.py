"""The held-out loss: a cheap, deterministic learning signal between the (expensive) sample-based evaluations.

On the evaluation's held-out images, each with its task condition, at K noise levels fixed for the whole run
(the steps t_k = round((k + 1/2) T / K) of the training schedule, k = 0..K-1, gamma_k = alpha_bar at t_k) and with
noise fixed per image and level:
    y_k      = sqrt(gamma_k) * y0 + sqrt(1 - gamma_k) * eps                      (Palette eq. 1)
    val_loss = mean_k mean_i || eps_hat(x_i, y_k, gamma_k) - eps ||^2 over the unknown pixels
i.e. DDPM's L_simple (Ho et al. 2020, eq. 14; Palette eq. 2 with p = 2) read on a fixed grid of levels instead
of a random draw. The network's output is converted to eps whatever it predicts (model/prediction.py), so runs
with different prediction targets, noise-level distributions or loss weightings are scored on one yardstick.
Nothing in it is random from one call to the next, so two checkpoints' values differ only by their weights
(MLPerf Training scores its diffusion benchmark the same way: the loss at fixed timesteps on held-out data).

Cost: K forward passes per image, no sampling chain and no Inception network (the cpu preset: 4 x 100 forwards,
about 4 s of one thread, against about 36 s for DDIM-20 sampling and KID on the same 100 images).
"""

from __future__ import annotations

import torch
from torch import nn

from model.prediction import Prediction, to_x0_eps
from model.schedule import NoiseSchedule

NOISE_SEED = 7_919  # the loss's own noise stream (not the samplers'), one generator per image


def fixed_levels(schedule: NoiseSchedule, k: int) -> torch.Tensor:
    """The K noise levels gamma_k [K] (float64, noisiest last): alpha_bar at the centres of K equal bins of t."""
    if k < 1:
        raise ValueError(f"the held-out loss needs at least one noise level, got {k}")
    t = torch.tensor([round((i + 0.5) * schedule.timesteps / k) for i in range(k)])
    return schedule.gammas[t.clamp(1, schedule.timesteps)]


class HeldOutLoss:
    """Called as `loss(net) -> float`: val_loss (above) of `net` in eval mode on fixed inputs.

    y0, cond: [N, 3, H, W] in [-1, 1]; mask: [N, 1, H, W], 1 = unknown (all ones for colorization).
    The inputs and the noise are drawn once here, so every call scores the same problems.
    """

    def __init__(self, y0: torch.Tensor, cond: torch.Tensor, mask: torch.Tensor, schedule: NoiseSchedule,
                 levels: int, prediction: Prediction, batch_size: int = 64, seed: int = NOISE_SEED):
        self.y0, self.cond, self.mask = y0, cond, mask
        self.gammas = fixed_levels(schedule, levels)
        self.prediction, self.batch_size = prediction, batch_size
        gens = [torch.Generator().manual_seed(seed + i) for i in range(len(y0))]
        # [K, N, 3, H, W]: level k of image i uses the k-th draw of image i's own stream (independent of N)
        self.eps = torch.stack([torch.stack([torch.randn(y0.shape[1:], generator=g) for _ in self.gammas])
                                for g in gens], dim=1)

    @torch.inference_mode()
    def __call__(self, net: nn.Module) -> float:
        device = next(net.parameters()).device
        total, pixels = 0.0, 0.0
        for k, gamma in enumerate(self.gammas):
            for start in range(0, len(self.y0), self.batch_size):
                sl = slice(start, start + self.batch_size)
                y0, cond, mask = (t[sl].to(device) for t in (self.y0, self.cond, self.mask))
                eps = self.eps[k, sl].to(device)
                g = gamma.item()
                y_t = g ** 0.5 * y0 + (1 - g) ** 0.5 * eps  # eq. 1
                gam = torch.full((len(y0),), g, device=device, dtype=torch.float32)
                out = net(torch.cat([cond, y_t * mask + y0 * (1 - mask)], dim=1), gam).float()
                eps_hat = to_x0_eps(self.prediction, out, y_t, g)[1]
                total += float(((eps_hat - eps).square() * mask).sum())
                pixels += float(mask.sum()) * y0.shape[1]
        return total / max(pixels, 1.0)
