import itertools
import math

import pytest
import torch
from _tiny import tiny_cfg
from torch import nn

from model.errors import ConfigError
from model.sample import sample
from model.samplers import DDIMSampler, DDPMSampler, make_sampler
from model.schedule import NoiseSchedule, match_terminal_betas
from model.unet import UNet


def schedule(T):
    """T steps that end at the alpha_bar_T of the paper's 2000-step schedule."""
    return NoiseSchedule(match_terminal_betas("linear", T, 1e-6, 0.01, reference_timesteps=2000))


def generators(seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


def tiny_unet():
    torch.manual_seed(0)
    cfg = tiny_cfg()
    net = UNet(cfg, 16)
    for m in net.modules():  # non-zero output, so that the samples depend on the network
        if isinstance(m, nn.Conv2d) and not m.weight.any():
            m.reset_parameters()
    return net.eval()


class Oracle(nn.Module):
    """Knows the clean image: returns the exact noise of y_t for every gamma."""

    def __init__(self, y0):
        super().__init__()
        self.y0 = y0

    def forward(self, x, gamma):
        g = gamma.double().view(-1, 1, 1, 1)
        return ((x[:, 3:].double() - g.sqrt() * self.y0) / (1 - g).sqrt()).float()


def inputs(batch, size=16, seed=0):
    torch.manual_seed(seed)
    y0 = torch.rand(batch, 3, size, size) * 1.6 - 0.8
    mask = torch.zeros(batch, 1, size, size)
    mask[:, :, 4:12, 4:12] = 1
    return y0 * (1 - mask), mask, y0


@pytest.mark.parametrize("T", [1, 37, 2000])
def test_gamma_pairs(T):
    s = schedule(T)
    ddpm = DDPMSampler(s).gamma_pairs()
    assert len(ddpm) == T and ddpm[0] == (s.gammas[T].item(), s.gammas[T - 1].item()) and ddpm[-1][1] == 1.0
    for k in sorted({1, min(7, T), min(50, T), T}):
        pairs = DDIMSampler(s, steps=k).gamma_pairs()
        levels = [pairs[0][0]] + [prev for _, prev in pairs]
        assert len(pairs) == k and levels[0] == s.gammas[T].item() and levels[-1] == 1.0
        assert all(a < b for a, b in itertools.pairwise(levels))  # strictly less noise every step


def test_ddim_steps_beyond_T_raise():
    with pytest.raises(ConfigError, match="steps"):
        DDIMSampler(schedule(10), steps=11)
    assert isinstance(make_sampler("ddim", schedule(10), steps=10), DDIMSampler)
    assert isinstance(make_sampler("ddpm", schedule(10)), DDPMSampler)


@pytest.mark.parametrize(
    "sampler",
    [DDPMSampler(schedule(100)), DDIMSampler(schedule(100), 10, 1.0), DDIMSampler(schedule(100), 10, 0.0)],
)
def test_step_with_true_noise_keeps_the_forward_marginal(sampler):
    # y_t ~ q(y_t | y0) and the true eps  =>  the step's output ~ q(y_prev | y0) = N(sqrt(g') y0, 1 - g').
    gen = torch.Generator().manual_seed(0)
    y0 = torch.full((200_000,), 0.5)
    for gamma_t, gamma_prev in sampler.gamma_pairs()[::3]:
        eps = torch.randn(y0.shape, generator=gen)
        y_t = math.sqrt(gamma_t) * y0 + math.sqrt(1 - gamma_t) * eps
        y_prev = sampler.step(eps, y_t, gamma_t, gamma_prev, torch.randn(y0.shape, generator=gen))
        assert y_prev.mean().item() == pytest.approx(math.sqrt(gamma_prev) * 0.5, abs=0.01)
        assert y_prev.std().item() == pytest.approx(math.sqrt(1 - gamma_prev), abs=0.01)


@pytest.mark.parametrize(
    "sampler",
    [DDPMSampler(schedule(37)), DDIMSampler(schedule(1200), 10), DDIMSampler(schedule(3000), 5, eta=1.0)],
)
def test_oracle_recovers_the_image_with_any_schedule(sampler):
    # The network sees gamma only, so any schedule length works; with the true noise the chain ends at y0.
    cond, mask, y0 = inputs(2)
    out = sample(Oracle(y0), cond, torch.ones_like(mask), y0, sampler, generators([0, 1]))
    torch.testing.assert_close(out, y0, atol=1e-4, rtol=0)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_deterministic_and_independent_of_batch(eta):
    net, sampler = tiny_unet(), DDIMSampler(schedule(100), steps=4, eta=eta)
    cond, mask, y0 = inputs(3)
    batched = sample(net, cond, mask, y0, sampler, generators([10, 11, 12]))
    assert torch.equal(batched, sample(net, cond, mask, y0, sampler, generators([10, 11, 12])))
    for i in range(3):
        alone = sample(net, cond[i : i + 1], mask[i : i + 1], y0[i : i + 1], sampler, generators([10 + i]))
        # Not bitwise: conv kernels may block a batch of 1 differently, and the first steps divide the
        # network's output by sqrt(gamma_T) ~ 0.007.
        torch.testing.assert_close(alone[0], batched[i], atol=1e-3, rtol=0)
    assert not torch.allclose(batched, sample(net, cond, mask, y0, sampler, generators([20, 21, 22])))


@pytest.mark.parametrize("sampler", [DDPMSampler(schedule(12)), DDIMSampler(schedule(2000), 3, 1.0)])
def test_inpainting_never_changes_known_pixels(sampler):
    cond, mask, y0 = inputs(2)
    out, frames = sample(
        tiny_unet(),
        cond,
        mask,
        y0,
        sampler,
        generators([0, 1]),
        return_intermediates=True,
        intermediate_every=1,
    )
    known = (mask == 0).expand_as(y0)
    assert len(frames) == len(sampler.gamma_pairs()) + 1
    for y in [out, *frames]:
        assert torch.equal(y[known], y0[known])
    assert not torch.allclose(out[~known], y0[~known], atol=0.05)  # the hole was generated
    assert out.min() >= -1 and out.max() <= 1


def test_intermediates_default_spacing():
    cond, mask, y0 = inputs(1)
    out, frames = sample(
        Oracle(y0), cond, mask, y0, DDPMSampler(schedule(40)), generators([0]), return_intermediates=True
    )
    assert len(frames) == 1 + 8  # y_T and every 40 // 8 = 5 steps
    torch.testing.assert_close(frames[-1].clamp(-1, 1), out)


def test_ddim_with_eta_one_is_the_ddpm_step():
    s = schedule(50)
    ddpm, ddim = DDPMSampler(s), DDIMSampler(s, steps=50, eta=1.0)
    assert ddpm.gamma_pairs() == ddim.gamma_pairs()
    gen = torch.Generator().manual_seed(0)
    eps_hat, y_t, noise = (torch.randn(2, 3, 4, 4, generator=gen) for _ in range(3))
    for gamma_t, gamma_prev in ddpm.gamma_pairs()[::7]:
        y_t = y_t * 0.3  # keeps y0_hat inside [-1, 1] at the first, noisiest steps
        torch.testing.assert_close(
            ddim.step(eps_hat, y_t, gamma_t, gamma_prev, noise),
            ddpm.step(eps_hat, y_t, gamma_t, gamma_prev, noise),
            atol=1e-5,
            rtol=1e-5,
        )


def test_the_denoising_strip_frames_are_spread_where_the_picture_forms():
    """Palette Fig. 9's strip keeps the steps nearest levels evenly spaced in log-SNR where the image forms (not
    evenly spaced steps, which show noise in most frames): with the cpu preset's schedule and DDIM-20, at least 6
    distinct frames, increasing in log-SNR, none in the noise-only range, ending with the output."""
    from model.config import DiffusionConfig
    from model.sample import STRIP_LOG_SNR, strip_steps
    from model.schedule import schedule_from_config

    pairs = make_sampler("ddim", schedule_from_config(DiffusionConfig(timesteps=1200, match_terminal=2000)),
                         steps=20, prediction="v").gamma_pairs()
    chosen = sorted(strip_steps(pairs))
    assert len(chosen) >= 6 and chosen[-1] == len(pairs) - 1
    levels = [math.log(g / (1 - g)) for _, g in (pairs[i] for i in chosen[:-1])]
    assert levels == sorted(levels) and min(levels) >= STRIP_LOG_SNR[0] - 0.6
    evenly = sorted(set(range(0, len(pairs), len(pairs) // 8)))  # evenly spaced steps: most frames noise
    noise = [i for i in evenly if math.log(pairs[i][1] / (1 - pairs[i][1])) < STRIP_LOG_SNR[0] - 0.6]
    assert len(noise) >= 3
