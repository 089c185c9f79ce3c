"""Which noise levels gamma training draws: Palette's uniform steps, EDM's log-normal, or a Laplace in log-SNR.

Every distribution is one over gamma (= alpha_bar, the level the network is conditioned on), so the samplers
and the schedule are unchanged. In log-SNR, lambda = ln(gamma / (1 - gamma)), gamma = sigmoid(lambda), and
EDM's sigma^2 = (1 - gamma) / gamma, so ln(sigma) = -lambda / 2:
    uniform     t ~ U{1..T}, gamma ~ U(gammas[t], gammas[t-1])           (Palette; WaveGrad, Chen et al. 2021)
    log_normal  ln(sigma) ~ N(P_mean, P_std^2), i.e. lambda ~ N(-2 P_mean, (2 P_std)^2)
                                                                (Karras et al., NeurIPS 2022, EDM, Table 1)
    laplace     lambda ~ Laplace(mu, b), density exp(-|lambda - mu| / b) / (2b)
                                                  (Hang et al. 2024, arXiv 2407.03297, sec. 3, mu 0, b 0.5)
The last two are truncated to the schedule's range lambda in [lambda(gamma_T), lambda(gamma_1)] (drawn by the
inverse CDF between the two ends' CDF values): the sampler starts from gamma_T, so the network never sees a
noisier level than it, and no probability piles up at the ends as clipping would leave it.
Each draw takes one uniform per image from the trainer's generator (two for `uniform`), so runs resume exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from model.config import DiffusionConfig
from model.schedule import NoiseSchedule

GammaSampler = Callable[[int, torch.Generator], torch.Tensor]  # (batch, generator) -> gamma float32 [B]


def sample_gamma(
    schedule: NoiseSchedule, batch: int, generator: torch.Generator, return_t: bool = False
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """t ~ U{1..T}, then gamma ~ U(gammas[t], gammas[t-1]): a continuous noise level (Palette, WaveGrad).

    Returns float32 [B] on the generator's device, and with return_t=True also the int64 steps t [B].
    """
    device = generator.device
    gammas = schedule.gammas.to(device)
    t = torch.randint(1, schedule.timesteps + 1, (batch,), generator=generator, device=device)
    u = torch.rand(batch, generator=generator, device=device, dtype=torch.float64)
    gamma = (gammas[t] + u * (gammas[t - 1] - gammas[t])).float()  # float64 first: gammas[t] ~ 1 - 1e-6
    return (gamma, t) if return_t else gamma


def log_snr_range(schedule: NoiseSchedule) -> tuple[float, float]:
    """(lambda(gamma_T), lambda(gamma_1)): the log-SNRs of the noisiest and the least noisy step, in float64."""
    g = schedule.gammas
    lo, hi = float(g[-1]), float(g[1])
    return math.log(lo) - math.log1p(-lo), math.log(hi) - math.log1p(-hi)


def _normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return torch.special.ndtr(x)


def _laplace_cdf(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x < 0, 0.5 * torch.exp(x.clamp(max=0)), 1 - 0.5 * torch.exp(-x.clamp(min=0)))


def _laplace_icdf(u: torch.Tensor) -> torch.Tensor:
    return torch.where(u < 0.5, torch.log(2 * u), -torch.log(2 * (1 - u)))


def _truncated(
    schedule: NoiseSchedule, batch: int, generator: torch.Generator, loc: float, scale: float, cdf, icdf
) -> torch.Tensor:
    """lambda = loc + scale * z, z from the standardised `cdf` truncated to the schedule's log-SNR range;
    -> gamma = sigmoid(lambda), float32 [B] on the generator's device. Computed in float64."""
    device = generator.device
    lo, hi = log_snr_range(schedule)
    ends = torch.tensor([(lo - loc) / scale, (hi - loc) / scale], dtype=torch.float64, device=device)
    c_lo, c_hi = cdf(ends).unbind()
    u = torch.rand(batch, generator=generator, device=device, dtype=torch.float64)
    z = icdf(c_lo + u * (c_hi - c_lo))
    # A CDF flat to float64 precision (an end many scales out) maps back to +-inf: the clamp keeps the range.
    lam = (loc + scale * z).clamp(lo, hi)
    return torch.sigmoid(lam).float()


def log_normal_gamma(
    schedule: NoiseSchedule, batch: int, generator: torch.Generator, p_mean: float = -1.2, p_std: float = 1.2
) -> torch.Tensor:
    """EDM's ln(sigma) ~ N(p_mean, p_std^2) with sigma^2 = (1 - gamma) / gamma, truncated to the schedule's range;
    float32 [B] on the generator's device."""
    return _truncated(schedule, batch, generator, -2 * p_mean, 2 * p_std, _normal_cdf, torch.special.ndtri)


def laplace_gamma(
    schedule: NoiseSchedule, batch: int, generator: torch.Generator, mu: float = 0.0, b: float = 0.5
) -> torch.Tensor:
    """log-SNR ~ Laplace(mu, b) (Hang et al. 2024), truncated to the schedule's range; float32 [B]."""
    return _truncated(schedule, batch, generator, mu, b, _laplace_cdf, _laplace_icdf)


def gamma_sampler(cfg: DiffusionConfig, schedule: NoiseSchedule) -> GammaSampler:
    """The training draw that `diffusion.noise_levels` names, bound to its parameters."""
    if cfg.noise_levels == "uniform":
        return lambda batch, generator: sample_gamma(schedule, batch, generator)
    if cfg.noise_levels == "log_normal":
        return lambda batch, generator: log_normal_gamma(schedule, batch, generator, cfg.log_normal_mean,
                                                         cfg.log_normal_std)
    if cfg.noise_levels == "laplace":
        return lambda batch, generator: laplace_gamma(schedule, batch, generator, cfg.laplace_mu, cfg.laplace_b)
    raise ValueError(f"diffusion.noise_levels must be uniform, log_normal or laplace, got {cfg.noise_levels!r}")
