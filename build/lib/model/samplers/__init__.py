"""Samplers: one per file, one interface (diffusers-scheduler style). The shared loop is model/sample.py.

A sampler is built from a NoiseSchedule, which need not be the training one: the network is conditioned on
gamma, not on a step index.
"""

from __future__ import annotations

from typing import Literal, Protocol

import torch

from model.prediction import Prediction
from model.samplers.ddim import DDIMSampler
from model.samplers.ddpm import DDPMSampler
from model.schedule import NoiseSchedule


class Sampler(Protocol):
    schedule: NoiseSchedule

    def gamma_pairs(self) -> list[tuple[float, float]]:
        """(gamma_t, gamma_prev) per step, noisiest first; the last gamma_prev is 1 (clean)."""
        ...

    prediction: Prediction

    def step(
        self, output: torch.Tensor, y_t: torch.Tensor, gamma_t: float, gamma_prev: float, noise: torch.Tensor
    ) -> torch.Tensor:
        """y_t at noise level gamma_t -> y at gamma_prev, given the network's output (eps, x0 or v, as
        `prediction` says; converted in model/prediction.py) and fresh N(0, I)."""
        ...


def make_sampler(
    name: Literal["ddpm", "ddim"], schedule: NoiseSchedule, steps: int = 50, eta: float = 0.0,
    prediction: Prediction = "eps",
) -> Sampler:
    """DDPM runs all T steps of `schedule` (steps and eta unused); DDIM runs `steps` steps with `eta`.
    `prediction` names what the network outputs (eps, x0 or v: diffusion.prediction of its training run)."""
    if name == "ddpm":
        return DDPMSampler(schedule, prediction=prediction)
    if name == "ddim":
        return DDIMSampler(schedule, steps=steps, eta=eta, prediction=prediction)
    raise ValueError(f"sampler must be 'ddpm' or 'ddim', got {name!r}")


__all__ = ["DDIMSampler", "DDPMSampler", "Sampler", "make_sampler"]
