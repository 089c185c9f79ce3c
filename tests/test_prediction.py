"""Prediction targets (eps, x0, v): conversions, samplers, learning, and transfer between targets refused."""

from __future__ import annotations

import math

import pytest
import torch
from _tiny import eight_masked_images, tiny_cfg
from torch import nn

from model.errors import CheckpointError
from model.objective import palette_loss
from model.prediction import PREDICTIONS, to_x0_eps, training_target
from model.sample import sample
from model.samplers import DDIMSampler, DDPMSampler
from model.schedule import NoiseSchedule, match_terminal_betas
from model.unet import UNet

SCHEDULE = NoiseSchedule(match_terminal_betas("linear", 100, 1e-6, 0.01, reference_timesteps=2000))
ALPHA_BAR_T = SCHEDULE.gammas[-1].item()  # the noisiest level, ~5e-5


@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("gamma", [ALPHA_BAR_T, 1e-3, 0.3, 0.9, 0.999, 1 - 1e-6])
def test_conversions_recover_the_truth(prediction, gamma):
    gen = torch.Generator().manual_seed(0)
    x0 = torch.rand(4, 3, 8, 8, generator=gen, dtype=torch.float64) * 2 - 1
    eps = torch.randn(4, 3, 8, 8, generator=gen, dtype=torch.float64)
    g = torch.full((4, 1, 1, 1), gamma, dtype=torch.float64)
    y_t = g.sqrt() * x0 + (1 - g).sqrt() * eps
    target = training_target(prediction, x0, eps, g)
    for gam in (gamma, g):  # a float (samplers) or a tensor (training)
        x0_hat, eps_hat = to_x0_eps(prediction, target, y_t, gam)
        torch.testing.assert_close(x0_hat, x0, rtol=0, atol=1e-9)
        torch.testing.assert_close(eps_hat, eps, rtol=0, atol=1e-9)
    # v by its definition (Salimans & Ho 2022); the other two are the truth itself
    expected = {"eps": eps, "x0": x0, "v": math.sqrt(gamma) * eps - math.sqrt(1 - gamma) * x0}[prediction]
    torch.testing.assert_close(target, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_conversions_in_float32_stay_accurate_where_the_samplers_use_them(prediction):
    # Samplers pass float32 tensors and float gammas; near gamma = 1, 1 - gamma must not be rounded away.
    gen = torch.Generator().manual_seed(1)
    x0, eps = torch.rand(2, 3, 8, 8, generator=gen) * 2 - 1, torch.randn(2, 3, 8, 8, generator=gen)
    for gamma, _ in DDIMSampler(SCHEDULE, steps=10, prediction=prediction).gamma_pairs():
        y_t = math.sqrt(gamma) * x0 + math.sqrt(1 - gamma) * eps
        g = torch.tensor(gamma, dtype=torch.float64)
        target = training_target(prediction, x0.double(), eps.double(), g).float()
        x0_hat = to_x0_eps(prediction, target, y_t, gamma)[0]
        # eps-prediction divides by sqrt(gamma): float32 rounding of y_t grows by 1/sqrt(alpha_bar_T) there
        tol = 1e-5 / math.sqrt(gamma) if prediction == "eps" else 1e-5
        torch.testing.assert_close(x0_hat, x0, rtol=0, atol=tol)


class Oracle(nn.Module):
    """Knows the clean image: outputs the exact eps, x0 or v of its input at every gamma."""

    def __init__(self, y0, prediction):
        super().__init__()
        self.y0, self.prediction = y0, prediction

    def forward(self, x, gamma):
        g = gamma.double().view(-1, 1, 1, 1)
        eps = (x[:, 3:].double() - g.sqrt() * self.y0) / (1 - g).sqrt()
        return training_target(self.prediction, self.y0.double(), eps, g).float()


def inputs(batch=2, size=16):
    torch.manual_seed(0)
    y0 = torch.rand(batch, 3, size, size) * 1.6 - 0.8
    mask = torch.zeros(batch, 1, size, size)
    mask[:, :, 4:12, 4:12] = 1
    return y0 * (1 - mask), mask, y0


def samplers(prediction):
    return [DDPMSampler(SCHEDULE, prediction=prediction), DDIMSampler(SCHEDULE, 10, 0.0, prediction),
            DDIMSampler(SCHEDULE, 10, 1.0, prediction)]


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_samplers_with_an_oracle_end_at_the_image(prediction):
    cond, mask, y0 = inputs()
    gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
    for sampler in samplers(prediction):
        out = sample(Oracle(y0, prediction), cond, torch.ones_like(mask), y0, sampler, gens)
        torch.testing.assert_close(out, y0, atol=1e-4, rtol=0)


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_samplers_keep_known_pixels_and_stay_finite(prediction):
    cond, mask, y0 = inputs()
    torch.manual_seed(0)
    net = UNet(tiny_cfg(), 16)
    for m in net.modules():  # a non-zero output, so that the samples depend on the network
        if isinstance(m, nn.Conv2d) and not m.weight.any():
            m.reset_parameters()
    for sampler in samplers(prediction):
        out, frames = sample(net.eval(), cond, mask, y0, sampler, [torch.Generator().manual_seed(s) for s in (0, 1)],
                             return_intermediates=True, intermediate_every=1)
        known = (mask == 0).expand_as(y0)
        for y in [out, *frames]:
            assert torch.isfinite(y).all()
            assert torch.equal(y[known], y0[known])


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_a_tiny_unet_overfits_eight_images_with_each_target(prediction):
    torch.manual_seed(0)
    net = UNet(tiny_cfg(), 16)
    y0, cond, mask = eight_masked_images()

    def eval_loss():  # the same gammas and noise every time
        with torch.no_grad():
            gen = torch.Generator().manual_seed(99)
            return sum(palette_loss(net, y0, cond, mask, SCHEDULE, gen, prediction=prediction).item()
                       for _ in range(8)) / 8

    before = eval_loss()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(100):
        loss = palette_loss(net, y0, cond, mask, SCHEDULE, gen, prediction=prediction)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    assert eval_loss() < 0.5 * before


def test_transfer_between_prediction_targets_is_refused(tmp_path, smoke_config):
    from model.checkpoint import latest_checkpoint
    from model.ema import make_ema
    from model.trainer import build_network, load_transfer_weights, train

    source = smoke_config(train__epochs=1, diffusion__prediction="v")
    train(source, tmp_path / "source", device="cpu")
    path = latest_checkpoint(tmp_path / "source" / "checkpoints")
    for target, ok in (("v", True), ("eps", False), ("x0", False)):
        cfg = smoke_config(task__name="colorization", diffusion__prediction=target)
        net = build_network(cfg)
        if ok:
            load_transfer_weights(path, net, make_ema(net, 0.9), cfg)
            continue
        with pytest.raises(CheckpointError) as e:
            load_transfer_weights(path, net, make_ema(net, 0.9), cfg)
        msg = str(e.value)
        assert "\n" not in msg and str(path) in msg and f"diffusion.prediction='{target}'" in msg


def test_horizontal_flips_resume_bitwise(tmp_path, smoke_config):
    from model.checkpoint import latest_checkpoint, load_checkpoint
    from model.trainer import Budget, train

    cfg = smoke_config(train__epochs=3, train__hflip=True, diffusion__prediction="v")
    train(cfg, tmp_path / "full", device="cpu")
    train(cfg, tmp_path / "split", device="cpu", budget=Budget(epochs=1))
    train(cfg, tmp_path / "split", device="cpu")
    a = load_checkpoint(latest_checkpoint(tmp_path / "full" / "checkpoints"))["net"]
    b = load_checkpoint(latest_checkpoint(tmp_path / "split" / "checkpoints"))["net"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    # flips are drawn: the same run without them ends elsewhere
    train(smoke_config(train__epochs=3, diffusion__prediction="v"), tmp_path / "noflip", device="cpu")
    c = load_checkpoint(latest_checkpoint(tmp_path / "noflip" / "checkpoints"))["net"]
    assert not all(torch.equal(a[k], c[k]) for k in a)
