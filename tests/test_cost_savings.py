"""Training-cost savings beyond the paper: Min-SNR-gamma and P2 weighting, noise-level distributions, post-hoc EMA.

Each weighting against its formula and at the schedule's ends; each distribution's range and moments; post-hoc
EMA reconstruction against directly tracked profiles; a tiny UNet learning with each option; bitwise resume."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _tiny import eight_masked_images, tiny_cfg

from model.checkpoint import latest_checkpoint, load_checkpoint
from model.config import DiffusionConfig, RunConfig, run_identity
from model.noise_levels import gamma_sampler, laplace_gamma, log_normal_gamma, log_snr_range
from model.objective import palette_loss
from model.phema import PowerEMA, exp_to_std, list_snapshots, profile, reconstruct, solve_coefficients, std_to_exp
from model.prediction import PREDICTIONS
from model.schedule import NoiseSchedule, make_betas
from model.trainer import Budget, train
from model.unet import UNet
from model.weighting import loss_weights, min_snr_weight, p2_weight

PAPER = NoiseSchedule(make_betas("linear", 2000, 1e-6, 0.01))  # log-SNR in [-10.0, 13.8]
SHORT = NoiseSchedule(make_betas("linear", 100, 1e-6, 0.01))  # the smoke preset's: log-SNR in [0.4, 13.8]


# -- Min-SNR-gamma (Hang et al. 2023) ---------------------------------------------------------------------------

@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("k", [1.0, 5.0])
def test_min_snr_weight_is_the_papers_formula(prediction, k):
    gamma = torch.cat([PAPER.gammas[1:].float(), torch.linspace(0.01, 0.99, 99)])
    snr = gamma.double() / (1 - gamma.double())
    expected = {"eps": torch.minimum(snr, torch.tensor(k)) / snr, "x0": torch.minimum(snr, torch.tensor(k)),
                "v": torch.minimum(snr, torch.tensor(k)) / (snr + 1)}[prediction]
    torch.testing.assert_close(min_snr_weight(gamma, prediction, k).double(), expected, rtol=1e-6, atol=0)
    assert (snr < k).any() and (snr > k).any()  # both sides of the clamp are checked


@pytest.mark.parametrize("prediction,at_0,at_1", [("eps", 1.0, 0.0), ("x0", 0.0, 5.0), ("v", 0.0, 0.0)])
def test_min_snr_weight_is_finite_at_the_schedules_ends(prediction, at_0, at_1):
    ends = torch.tensor([0.0, PAPER.gammas[-1].item(), PAPER.gammas[1].item(), 1.0])
    w = min_snr_weight(ends, prediction, 5.0)
    assert torch.isfinite(w).all() and (w >= 0).all()
    assert w[0].item() == at_0 and w[-1].item() == at_1


# -- P2 (Choi et al. 2022) --------------------------------------------------------------------------------------

@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("k,g", [(1.0, 1.0), (1.0, 0.5), (0.5, 2.0)])
def test_p2_weight_is_the_papers_formula_for_each_target(prediction, k, g):
    gamma = torch.cat([PAPER.gammas[1:].float(), torch.linspace(0.01, 0.99, 99)])
    snr = gamma.double() / (1 - gamma.double())
    on_eps = 1 / (k + snr) ** g  # eq. 8, on L_simple
    # each target's squared error is the eps-error times 1 / SNR (x0) or (SNR + 1) / SNR (v)
    expected = {"eps": on_eps, "x0": on_eps * snr, "v": on_eps * snr / (snr + 1)}[prediction]
    torch.testing.assert_close(p2_weight(gamma, prediction, k, g).double(), expected, rtol=1e-5, atol=0)
    by_name = loss_weights(gamma, "p2", prediction, p2_k=k, p2_gamma=g)
    torch.testing.assert_close(by_name, p2_weight(gamma, prediction, k, g))


def test_p2_weight_is_finite_at_the_schedules_ends_and_plain_at_exponent_0():
    ends = torch.tensor([0.0, PAPER.gammas[-1].item(), PAPER.gammas[1].item(), 1.0])
    for prediction in PREDICTIONS:
        w = p2_weight(ends[:3], prediction, 1.0, 0.5)  # gamma = 1 never trains; x0 with g < 1 diverges there
        assert torch.isfinite(w).all() and (w >= 0).all()
    one_minus = (1 - ends.double()).tolist()  # of the float32 gammas the network is given; eps: 1 - gamma at k = 1
    assert p2_weight(ends, "eps", 1.0, 1.0).tolist() == [pytest.approx(x, rel=1e-6) for x in one_minus]
    assert p2_weight(ends, "v", 1.0, 1.0)[[0, 3]].tolist() == [0.0, 0.0]
    assert p2_weight(ends, "x0", 1.0, 1.0)[[0, 3]].tolist() == [0.0, 1.0]
    torch.testing.assert_close(p2_weight(ends, "eps", 1.0, 0.0), torch.ones(4))  # g = 0: L_simple
    for bad in ({"p2_k": 0.0}, {"p2_gamma": -0.5}):
        with pytest.raises(ValueError, match="diffusion.p2"):
            RunConfig.model_validate({"diffusion": {"loss_weighting": "p2", **bad}})


class _Zero(torch.nn.Module):
    def forward(self, x, gamma):
        return torch.zeros_like(x[:, :3])


@pytest.mark.parametrize("weighting", ["min_snr", "p2"])
def test_weighted_loss_is_the_batch_mean_of_weighted_per_image_means(weighting):
    g = torch.Generator().manual_seed(0)
    y0 = torch.rand(4, 3, 8, 8, generator=g) * 2 - 1
    mask = torch.zeros(4, 1, 8, 8)
    for i, side in enumerate([2, 4, 6, 8]):  # holes of different sizes: per image is not per pixel
        mask[i, :, :side, :side] = 1
    gamma = torch.tensor([1e-3, 0.2, 0.8, 0.999])
    for prediction in PREDICTIONS:
        loss = palette_loss(_Zero(), y0, y0, mask, PAPER, torch.Generator().manual_seed(1), prediction=prediction,
                            draw_gamma=lambda b, gen: gamma, weighting=weighting, min_snr_gamma=5.0,
                            p2_k=1.0, p2_gamma=0.5)
        eps = torch.randn(y0.shape, generator=torch.Generator().manual_seed(1))
        gm = gamma.view(-1, 1, 1, 1)
        target = {"eps": eps, "x0": y0, "v": gm.sqrt() * eps - (1 - gm).sqrt() * y0}[prediction]
        per_image = (target.square() * mask).sum(dim=(1, 2, 3)) / (3 * mask.sum(dim=(1, 2, 3)))
        w = min_snr_weight(gamma, prediction, 5.0) if weighting == "min_snr" else p2_weight(gamma, prediction, 1.0, 0.5)
        expected = (w * per_image).mean()
        torch.testing.assert_close(loss, expected)


def test_default_loss_and_draw_are_todays():
    net = UNet(tiny_cfg(), 16)
    y0 = torch.rand(2, 3, 16, 16) * 2 - 1
    mask = torch.ones(2, 1, 16, 16)
    plain = palette_loss(net, y0, y0, mask, SHORT, torch.Generator().manual_seed(3))
    explicit = palette_loss(net, y0, y0, mask, SHORT, torch.Generator().manual_seed(3),
                            draw_gamma=gamma_sampler(DiffusionConfig(), SHORT), weighting="none")
    assert torch.equal(plain, explicit)


# -- noise-level distributions ----------------------------------------------------------------------------------

def _log_snr(gamma: torch.Tensor) -> torch.Tensor:
    g = gamma.double()
    return torch.log(g) - torch.log1p(-g)


@pytest.mark.parametrize("schedule", [PAPER, SHORT], ids=["T2000", "T100"])
@pytest.mark.parametrize("kind", ["uniform", "log_normal", "laplace"])
def test_noise_levels_stay_inside_the_schedules_range(schedule, kind):
    draw = gamma_sampler(DiffusionConfig(noise_levels=kind), schedule)
    gamma = draw(100_000, torch.Generator().manual_seed(0))
    assert gamma.dtype == torch.float32 and gamma.shape == (100_000,)
    lo = schedule.gammas[-1].float().item()
    hi = 1.0 if kind == "uniform" else schedule.gammas[1].float().item()
    assert lo <= gamma.min().item() and gamma.max().item() <= hi
    assert torch.equal(gamma, draw(100_000, torch.Generator().manual_seed(0)))  # reproducible
    if kind != "uniform":  # truncated, not clipped: no pile-up at the noisiest end even where it cuts (T100)
        assert (gamma == gamma.min()).float().mean().item() < 1e-3


def test_uniform_has_palettes_moments():
    gamma = gamma_sampler(DiffusionConfig(), PAPER)(100_000, torch.Generator().manual_seed(0)).double()
    a, b = PAPER.gammas[1:], PAPER.gammas[:-1]  # step t: gamma ~ U(gammas[t], gammas[t-1]), t ~ U{1..T}
    mean, second = ((a + b) / 2).mean().item(), ((a * a + a * b + b * b) / 3).mean().item()
    assert gamma.mean().item() == pytest.approx(mean, abs=0.003)  # standard error 0.0009
    assert gamma.std().item() == pytest.approx(math.sqrt(second - mean**2), abs=0.003)


def test_log_normal_has_edms_moments_in_ln_sigma():
    gamma = log_normal_gamma(PAPER, 100_000, torch.Generator().manual_seed(0), p_mean=-1.2, p_std=1.2)
    ln_sigma = -_log_snr(gamma) / 2  # sigma^2 = (1 - gamma) / gamma
    assert ln_sigma.mean().item() == pytest.approx(-1.2, abs=0.02)  # standard error 0.004
    assert ln_sigma.std().item() == pytest.approx(1.2, abs=0.02)


def test_laplace_has_its_moments_in_log_snr():
    lam = _log_snr(laplace_gamma(PAPER, 100_000, torch.Generator().manual_seed(0), mu=0.5, b=0.5))
    assert lam.mean().item() == pytest.approx(0.5, abs=0.01)  # standard error 0.002
    assert lam.std().item() == pytest.approx(math.sqrt(2) * 0.5, abs=0.01)
    assert (lam - 0.5).abs().median().item() == pytest.approx(0.5 * math.log(2), abs=0.01)


def test_truncation_follows_the_truncated_density():
    # T100 cuts log-SNR below 0.41: a log-normal of mean 2.4, sd 2.4 keeps P(lambda > lo) of its mass there
    lo, hi = log_snr_range(SHORT)
    lam = _log_snr(log_normal_gamma(SHORT, 100_000, torch.Generator().manual_seed(1)))
    dist = torch.distributions.Normal(2.4, 2.4)
    kept = 1 - dist.cdf(torch.tensor(lo)).item()
    median = dist.icdf(torch.tensor(1 - kept / 2)).item()  # the truncated distribution's median
    assert lam.median().item() == pytest.approx(median, abs=0.03)
    assert lam.min().item() >= lo - 1e-4


# -- post-hoc EMA (Karras et al. 2024) --------------------------------------------------------------------------

def test_sigma_rel_and_exponent_are_inverse():
    for s in (0.01, 0.05, 0.07, 0.10, 0.2):
        assert exp_to_std(std_to_exp(s)) == pytest.approx(s, rel=1e-9)
    assert std_to_exp(0.05) == pytest.approx(16.97, abs=0.01) and std_to_exp(0.10) == pytest.approx(6.94, abs=0.01)


class _Scalars(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))


def _weights_sequence(T: int) -> np.ndarray:
    rng = np.random.default_rng(0)  # a random walk with a trend: what training weights look like
    return np.cumsum(rng.normal(size=(T, 3)), axis=0) + np.linspace(0, 30, T)[:, None]


def test_power_ema_is_its_profile_and_reconstructs_a_third_length(tmp_path):
    T = 300
    theta = _weights_sequence(T)
    net = _Scalars()
    tracked, direct = PowerEMA(net, [0.05, 0.10]), PowerEMA(net, [0.07])
    history = []
    for t in range(1, T + 1):
        net.w.data = torch.from_numpy(theta[t - 1])
        tracked.update(net)
        direct.update(net)
        history.append([p["w"].clone().numpy() for p in tracked.profiles])
        if t % 10 == 0:
            tracked.snapshot(tmp_path, images_seen=8 * t)
    # the profile tracked by the recursion is the closed-form weighting of theta_1..theta_T
    for e, prof in zip(tracked.exponents, tracked.profiles, strict=True):
        np.testing.assert_allclose(prof["w"].numpy(), profile(T, e) @ theta, rtol=1e-12)
    # snapshots at every update span every profile: the 0.07 EMA exactly, to float tolerance
    steps = [t for t in range(1, T + 1) for _ in (0, 1)]
    exps = tracked.exponents * T
    x, residual = solve_coefficients(steps, exps, T, std_to_exp(0.07))
    rebuilt = x @ np.array([history[t - 1][j] for t in range(1, T + 1) for j in (0, 1)])
    want = direct.profiles[0]["w"].numpy()
    np.testing.assert_allclose(rebuilt, want, rtol=1e-9, atol=1e-9)
    assert residual < 1e-12
    # snapshots every 10 updates, from the files: close, and far closer than either tracked profile
    state, info = reconstruct(tmp_path, 0.07)
    assert info["step"] == T and info["images_seen"] == 8 * T and len(list_snapshots(tmp_path)) == 30
    error = np.abs(state["w"].double().numpy() - want).max()
    gap = min(np.abs(p["w"].numpy() - want).max() for p in tracked.profiles)
    assert error < 1e-3 * gap and info["relative_residual"] < 1e-2
    # a tracked length itself comes back as that profile
    same, _ = reconstruct(tmp_path, 0.05)
    np.testing.assert_allclose(same["w"].double().numpy(), tracked.profiles[0]["w"].numpy(), rtol=1e-6)


def test_phema_keys_are_validated_and_left_out_of_old_identities():
    cfg = RunConfig()
    ident = run_identity(cfg)
    for section, key in [("diffusion", "loss_weighting"), ("diffusion", "noise_levels"),
                         ("diffusion", "min_snr_gamma"), ("diffusion", "p2_k"), ("diffusion", "p2_gamma"),
                         ("train", "phema_stds"), ("train", "phema_snapshot_every")]:
        assert key not in ident[section]
    on = RunConfig.model_validate({"diffusion": {"loss_weighting": "min_snr"}, "train": {"phema_stds": [0.05, 0.1]}})
    assert run_identity(on)["diffusion"]["loss_weighting"] == "min_snr" and run_identity(on) != ident
    for bad in ([0.0], [0.3], [0.05, 0.05]):
        with pytest.raises(ValueError, match="train.phema_stds"):
            RunConfig.model_validate({"train": {"phema_stds": bad}})


# -- learning and resuming with each option -----------------------------------------------------------------------

OPTIONS = {
    "min_snr": dict(weighting="min_snr"),
    "p2": dict(weighting="p2"),
    "log_normal": dict(draw_gamma=gamma_sampler(DiffusionConfig(noise_levels="log_normal"), SHORT)),
    "laplace": dict(draw_gamma=gamma_sampler(DiffusionConfig(noise_levels="laplace"), SHORT)),
}


@pytest.mark.parametrize("option", OPTIONS)
def test_a_tiny_unet_overfits_eight_images_with_each_option(option):
    torch.manual_seed(0)
    net = UNet(tiny_cfg(), 16)
    y0, cond, mask = eight_masked_images()
    kw = dict(prediction="v", **OPTIONS[option])

    def eval_loss():  # the same gammas and noise every time
        with torch.no_grad():
            gen = torch.Generator().manual_seed(99)
            return sum(palette_loss(net, y0, cond, mask, SHORT, gen, **kw).item() for _ in range(8)) / 8

    before = eval_loss()
    opt = torch.optim.Adam(net.parameters(), lr=4e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(40):  # the loss falls to 0.14-0.28 of its start (0.5 asked)
        loss = palette_loss(net, y0, cond, mask, SHORT, gen, **kw)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    assert eval_loss() < 0.5 * before


RESUME = {
    "min_snr": {"diffusion__loss_weighting": "min_snr"},
    "p2": {"diffusion__loss_weighting": "p2"},
    "log_normal": {"diffusion__noise_levels": "log_normal"},
    "laplace": {"diffusion__noise_levels": "laplace"},
    "phema": {"train__phema_stds": [0.05, 0.10], "train__phema_snapshot_every": 16},
}


def _ckpt(run):
    return load_checkpoint(latest_checkpoint(run / "checkpoints"))


@pytest.mark.parametrize("option", RESUME)
def test_resume_is_bitwise_with_each_option(tmp_path, smoke_config, option):
    cfg = smoke_config(train__epochs=3, diffusion__prediction="v", **RESUME[option])
    train(cfg, tmp_path / "full", device="cpu")
    train(cfg, tmp_path / "split", device="cpu", budget=Budget(epochs=1))
    train(cfg, tmp_path / "split", device="cpu")
    a, b = _ckpt(tmp_path / "full"), _ckpt(tmp_path / "split")
    for key in ("net", "ema"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key])
    plain = smoke_config(train__epochs=3, diffusion__prediction="v")
    train(plain, tmp_path / "plain", device="cpu")
    c = _ckpt(tmp_path / "plain")
    if option == "phema":  # tracking profiles leaves the training itself untouched
        assert all(torch.equal(a["net"][k], c["net"][k]) for k in a["net"])
        for pa, pb in zip(a["phema"]["profiles"], b["phema"]["profiles"], strict=True):
            assert all(torch.equal(pa[k], pb[k]) for k in pa)
        snaps = list_snapshots(tmp_path / "full" / "phema")
        assert [p.name for p in snaps] == [p.name for p in list_snapshots(tmp_path / "split" / "phema")]
        steps = a["progress"]["steps"]
        assert snaps[-1].name == f"phema-{steps:010d}.pt" and len(snaps) >= 3  # every 16 images, and the last
        for p in snaps:
            sa = torch.load(p, weights_only=True)
            sb = torch.load(tmp_path / "split" / "phema" / p.name, weights_only=True)
            pairs = zip(sa["profiles"], sb["profiles"], strict=True)
            assert all(torch.equal(x[k], y[k]) for x, y in pairs for k in x)
        state, info = reconstruct(tmp_path / "full" / "phema", 0.10)  # a tracked length: that profile
        assert info["step"] == steps
        assert all(torch.allclose(state[k], a["phema"]["profiles"][1][k], rtol=1e-5, atol=1e-6) for k in state)
    else:  # the option changes what is learned
        assert not all(torch.equal(a["net"][k], c["net"][k]) for k in a["net"])


def test_bench_evaluate_scores_a_reconstructed_ema(tmp_path, smoke_config):
    from model.evaluate import evaluate

    cfg = smoke_config(train__epochs=2, train__phema_stds=[0.05, 0.10], train__phema_snapshot_every=8)
    train(cfg, tmp_path / "run", device="cpu")
    out = evaluate(tmp_path / "run", device="cpu", phema_std=0.07)
    assert out["out_dir"].endswith("-phema0.07") and out["phema"]["sigma_rel"] == 0.07
    assert math.isfinite(out["psnr"]) and out["phema"]["step"] == _ckpt(tmp_path / "run")["progress"]["steps"]
