import math

import pytest
import torch

from model.config import DiffusionConfig
from model.errors import ConfigError
from model.schedule import NoiseSchedule, make_betas, match_terminal_betas, schedule_from_config

KINDS = ["linear", "cosine", "quadratic"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("T", [1, 10, 2000])
def test_alpha_bar_strictly_decreasing_and_gammas(kind, T):
    s = NoiseSchedule(make_betas(kind, T, 1e-6, 0.01))
    assert s.timesteps == T
    assert s.betas.dtype == s.alpha_bar.dtype == s.gammas.dtype == torch.float64
    assert s.gammas.shape == (T + 1,) and s.gammas[0] == 1.0
    assert torch.equal(s.gammas[1:], s.alpha_bar)
    assert (s.alpha_bar[1:] < s.alpha_bar[:-1]).all()
    assert 0.0 < s.terminal_alpha_bar < 1.0
    assert s.terminal_snr == pytest.approx(s.terminal_alpha_bar / (1 - s.terminal_alpha_bar))


def test_linear_and_quadratic_endpoints():
    lin = make_betas("linear", 2000, 1e-6, 0.01)
    quad = make_betas("quadratic", 2000, 1e-6, 0.01)
    assert lin[0].item() == pytest.approx(1e-6) and lin[-1].item() == pytest.approx(0.01)
    assert quad[0].item() == pytest.approx(1e-6) and quad[-1].item() == pytest.approx(0.01)
    assert (quad[1:-1] < lin[1:-1]).all()  # the quadratic schedule is below the linear one in between


def test_cosine_follows_formula_and_clips():
    T = 1000
    s = NoiseSchedule(make_betas("cosine", T, 1e-6, 0.01))
    f = lambda t: math.cos((t / T + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    assert s.alpha_bar[T // 2 - 1].item() == pytest.approx(f(T // 2) / f(0), rel=1e-9)
    assert s.betas.max().item() == pytest.approx(0.999)  # the last beta (alpha_bar -> 0) is clipped
    assert torch.equal(make_betas("cosine", T, 1e-6, 0.01), make_betas("cosine", T, 1e-3, 0.5))


@pytest.mark.parametrize("kind", KINDS)
def test_match_terminal_2000_to_1200(kind):
    reference = NoiseSchedule(make_betas(kind, 2000, 1e-6, 0.01))
    plain = make_betas(kind, 1200, 1e-6, 0.01)
    matched = NoiseSchedule(match_terminal_betas(kind, 1200, 1e-6, 0.01, reference_timesteps=2000))
    assert matched.timesteps == 1200
    ref, got = reference.terminal_alpha_bar, matched.terminal_alpha_bar
    assert abs(got - ref) <= 1e-6 and abs(got / ref - 1) <= 1e-6
    ratio = matched.betas / plain
    assert torch.allclose(ratio, ratio[0].expand_as(ratio), rtol=1e-12)  # one factor for every beta
    assert (matched.betas < 1).all()
    if kind != "cosine":  # fewer steps reach the same distortion: more noise per step
        assert ratio[0] > 1.5


def test_match_terminal_same_length_is_identity():
    betas = make_betas("linear", 500, 1e-4, 0.02)
    torch.testing.assert_close(match_terminal_betas("linear", 500, 1e-4, 0.02, 500), betas, rtol=1e-9, atol=0)


def test_match_terminal_impossible_raises():
    with pytest.raises(ConfigError, match="match_terminal"):
        match_terminal_betas("linear", 2, 0.5, 0.9, reference_timesteps=100_000)


def test_bad_inputs_raise():
    with pytest.raises(ConfigError):
        make_betas("linear", 0, 1e-6, 0.01)
    with pytest.raises(ConfigError):
        make_betas("sigmoid", 10, 1e-6, 0.01)
    with pytest.raises(ConfigError):
        make_betas("linear", 10, 0.1, 0.01)
    with pytest.raises(ConfigError):
        NoiseSchedule(torch.tensor([0.1, 1.0], dtype=torch.float64))


def test_schedule_from_config():
    default = schedule_from_config(DiffusionConfig())
    assert torch.equal(default.betas, make_betas("linear", 2000, 1e-6, 0.01))
    explicit = schedule_from_config(DiffusionConfig(betas=[0.1, 0.2, 0.3], match_terminal=2000))
    assert explicit.timesteps == 3 and explicit.gammas[-1].item() == pytest.approx(0.9 * 0.8 * 0.7)
    matched = schedule_from_config(DiffusionConfig(timesteps=1200, match_terminal=2000))
    assert matched.terminal_alpha_bar == pytest.approx(default.terminal_alpha_bar, rel=1e-6)
