"""Noise schedules: betas, alpha_bar and the noise levels gamma that the network is conditioned on.

Notation (Palette / WaveGrad): step t = 1..T adds noise with variance beta_t;
alpha_bar_t = prod_{s<=t} (1 - beta_s) and gamma_t = alpha_bar_t, so that
    y_t = sqrt(gamma_t) * y_0 + sqrt(1 - gamma_t) * eps,   eps ~ N(0, I)         (Palette eq. 1)
`gammas` has T + 1 entries: gammas[0] = 1 (clean image), gammas[t] = alpha_bar_t. Everything is float64:
alpha_bar_T of the paper's schedule is ~4.5e-5 and float32 cumprods drift.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch

from model.config import DiffusionConfig
from model.errors import ConfigError

ScheduleKind = Literal["linear", "cosine", "quadratic"]


def make_betas(kind: ScheduleKind, timesteps: int, beta_start: float, beta_end: float) -> torch.Tensor:
    """Betas of a T-step schedule, float64 [T].

    linear:    linspace(beta_start, beta_end)                       (Ho et al. 2020; Palette: 1e-6..0.01)
    quadratic: linspace(sqrt(beta_start), sqrt(beta_end)) ** 2
    cosine:    alpha_bar(t) = cos((t/T + s) / (1 + s) * pi/2)^2, s = 0.008, betas clipped to 0.999
               (Nichol & Dhariwal 2021 eq. 17). The beta range is not used for cosine.
    """
    if timesteps < 1:
        raise ConfigError(f"diffusion.timesteps must be >= 1, got {timesteps}")
    if kind in ("linear", "quadratic") and not 0.0 < beta_start <= beta_end < 1.0:
        raise ConfigError(f"diffusion: need 0 < beta_start <= beta_end < 1, got {beta_start=}, {beta_end=}")
    if kind == "linear":
        return torch.linspace(beta_start, beta_end, timesteps, dtype=torch.float64)
    if kind == "quadratic":
        return torch.linspace(beta_start**0.5, beta_end**0.5, timesteps, dtype=torch.float64) ** 2
    if kind == "cosine":
        s = 0.008
        t = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
        f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
        alpha_bar = f / f[0]
        return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=0.999)
    raise ConfigError(f"diffusion.schedule must be linear, cosine or quadratic, got {kind!r}")


@dataclass(frozen=True, eq=False)
class NoiseSchedule:
    """A T-step schedule. Index conventions: alpha_bar[t-1] is step t; gammas[t] is step t, gammas[0] = 1."""

    betas: torch.Tensor  # float64 [T], each in (0, 1)
    alpha_bar: torch.Tensor = field(init=False)  # float64 [T]
    gammas: torch.Tensor = field(init=False)  # float64 [T + 1]

    def __post_init__(self):
        betas = torch.as_tensor(self.betas, dtype=torch.float64).detach().cpu()
        if betas.ndim != 1 or betas.numel() == 0:
            raise ConfigError(f"diffusion.betas must be a non-empty 1-D list, got shape {tuple(betas.shape)}")
        if not bool(((betas > 0) & (betas < 1)).all()):
            raise ConfigError("diffusion.betas must all lie in (0, 1)")
        alpha_bar = torch.cumprod(1 - betas, dim=0)
        object.__setattr__(self, "betas", betas)
        object.__setattr__(self, "alpha_bar", alpha_bar)
        object.__setattr__(self, "gammas", torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar]))

    @property
    def timesteps(self) -> int:
        return self.betas.numel()

    @property
    def terminal_alpha_bar(self) -> float:
        return float(self.alpha_bar[-1])

    @property
    def terminal_snr(self) -> float:
        """Signal-to-noise ratio left at step T: alpha_bar_T / (1 - alpha_bar_T)."""
        return self.terminal_alpha_bar / (1 - self.terminal_alpha_bar)


def _log_alpha_bar_T(betas: torch.Tensor, scale: float) -> float:
    return float(torch.log1p(-scale * betas).sum())


def match_terminal_betas(
    kind: ScheduleKind, timesteps: int, beta_start: float, beta_end: float, reference_timesteps: int
) -> torch.Tensor:
    """Betas of the T-step schedule times one factor s, so that alpha_bar_T equals that of the
    `reference_timesteps`-step schedule of the same kind and beta range.

    The paper's "2000 steps reduced to 1200, the noise per step proportionally increased": the shorter
    chain ends at the same distortion. log alpha_bar_T(s) = sum log(1 - s beta_t) falls monotonically
    from 0 (s = 0) to -inf (s = 1 / max beta), so bisection on s in float64 finds it and keeps betas < 1.
    """
    if reference_timesteps < 1:
        raise ConfigError(f"diffusion.match_terminal must be >= 1, got {reference_timesteps}")
    betas = make_betas(kind, timesteps, beta_start, beta_end)
    target = float(torch.log1p(-make_betas(kind, reference_timesteps, beta_start, beta_end)).sum())
    if not math.isfinite(target) or target >= 0.0:
        raise ConfigError(
            f"diffusion.match_terminal={reference_timesteps}: the reference alpha_bar_T "
            f"({math.exp(target):.3g}) is not in (0, 1) in float64"
        )
    lo, hi = 0.0, 1.0 / float(betas.max())  # log alpha_bar_T(lo) = 0 > target > -inf = at hi
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):  # interval cannot shrink any more in float64
            break
        if _log_alpha_bar_T(betas, mid) > target:
            lo = mid
        else:
            hi = mid
    error, scale = min((abs(_log_alpha_bar_T(betas, s) - target), s) for s in (lo, hi))
    scaled = betas * scale  # error above = the relative error of alpha_bar_T
    if not bool((scaled < 1).all()) or error > 1e-9:
        raise ConfigError(
            f"diffusion.match_terminal={reference_timesteps}: cannot rescale the {timesteps}-step {kind} "
            f"schedule to alpha_bar_T={math.exp(target):.6g} with betas < 1 (relative error {error:.2g})"
        )
    return scaled


def schedule_from_config(cfg: DiffusionConfig) -> NoiseSchedule:
    """Explicit `betas` win; else the `match_terminal` rescaling; else the plain schedule."""
    if cfg.betas is not None:
        return NoiseSchedule(torch.tensor(cfg.betas, dtype=torch.float64))
    if cfg.match_terminal is not None:
        betas = match_terminal_betas(
            cfg.schedule, cfg.timesteps, cfg.beta_start, cfg.beta_end, reference_timesteps=cfg.match_terminal
        )
        return NoiseSchedule(betas)
    return NoiseSchedule(make_betas(cfg.schedule, cfg.timesteps, cfg.beta_start, cfg.beta_end))
