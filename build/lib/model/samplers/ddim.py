"""DDIM sampling (Song et al. 2021) on k evenly spaced steps: eta = 0 deterministic, eta = 1 DDPM-like."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch

from model.errors import ConfigError
from model.prediction import Prediction, to_x0_eps
from model.schedule import NoiseSchedule


@dataclass(frozen=True, eq=False)
class DDIMSampler:
    schedule: NoiseSchedule
    steps: int = 50
    eta: float = 0.0
    prediction: Prediction = "eps"  # what the network outputs (model/prediction.py)

    def __post_init__(self):
        if not 1 <= self.steps <= self.schedule.timesteps:
            raise ConfigError(
                f"eval.steps={self.steps}: DDIM needs 1 <= steps <= T={self.schedule.timesteps}"
            )
        if not 0.0 <= self.eta <= 1.0:
            raise ConfigError(f"eval.eta={self.eta} must lie in [0, 1]")

    def gamma_pairs(self) -> list[tuple[float, float]]:
        """k pairs on the steps round(T - i T / k), i = 0..k: starts at step T ("trailing" spacing, so the
        first step sees the schedule's noisiest level) and ends at gamma = 1. floor(x + 0.5), not
        round-half-even, so that steps at least 1 apart never collide."""
        T, k = self.schedule.timesteps, self.steps
        ts = [math.floor(T - i * T / k + 0.5) for i in range(k + 1)]
        g = self.schedule.gammas.tolist()
        return [(g[a], g[b]) for a, b in itertools.pairwise(ts)]

    def step(
        self, output: torch.Tensor, y_t: torch.Tensor, gamma_t: float, gamma_prev: float, noise: torch.Tensor
    ) -> torch.Tensor:
        y0_hat = to_x0_eps(self.prediction, output, y_t, gamma_t)[0].clamp(-1.0, 1.0)
        # The noise direction consistent with the clipped y0_hat (as guided-diffusion does).
        eps = (y_t - math.sqrt(gamma_t) * y0_hat) / math.sqrt(1.0 - gamma_t)
        sigma = self.eta * math.sqrt((1.0 - gamma_prev) / (1.0 - gamma_t) * (1.0 - gamma_t / gamma_prev))
        direction = math.sqrt(max(1.0 - gamma_prev - sigma**2, 0.0))
        # Song et al. eq. 12: y_prev = sqrt(g_prev) y0_hat + sqrt(1 - g_prev - sigma^2) eps + sigma z
        return math.sqrt(gamma_prev) * y0_hat + direction * eps + sigma * noise
