"""Ancestral DDPM sampling (Ho et al. 2020, Algorithm 2) over all T steps of a schedule."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from model.prediction import Prediction, to_x0_eps
from model.schedule import NoiseSchedule


@dataclass(frozen=True, eq=False)
class DDPMSampler:
    schedule: NoiseSchedule
    prediction: Prediction = "eps"  # what the network outputs (model/prediction.py)

    def gamma_pairs(self) -> list[tuple[float, float]]:
        """(gamma_t, gamma_{t-1}) for t = T..1, noisiest first; the last pair ends at gamma = 1 (clean)."""
        g = self.schedule.gammas.tolist()
        return [(g[t], g[t - 1]) for t in range(self.schedule.timesteps, 0, -1)]

    def step(
        self, output: torch.Tensor, y_t: torch.Tensor, gamma_t: float, gamma_prev: float, noise: torch.Tensor
    ) -> torch.Tensor:
        """One draw from the posterior q(y_{t-1} | y_t, y0_hat), with y0_hat clipped to [-1, 1]."""
        alpha_t = gamma_t / gamma_prev
        beta_t = 1.0 - alpha_t
        y0_hat = to_x0_eps(self.prediction, output, y_t, gamma_t)[0].clamp(-1.0, 1.0)
        # Posterior mean and variance (Ho et al. eq. 6-7), in Palette's gamma notation.
        mean = (math.sqrt(gamma_prev) * beta_t / (1.0 - gamma_t)) * y0_hat + (
            math.sqrt(alpha_t) * (1.0 - gamma_prev) / (1.0 - gamma_t)
        ) * y_t
        variance = beta_t * (1.0 - gamma_prev) / (1.0 - gamma_t)  # 0 at the last step (gamma_prev = 1)
        return mean + math.sqrt(variance) * noise
