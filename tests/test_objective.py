import pytest
import torch
import torch.nn.functional as F
from _tiny import tiny_cfg
from torch import nn

from model.objective import palette_loss, sample_gamma
from model.schedule import NoiseSchedule, make_betas
from model.unet import UNet


def schedule(T=2000):
    return NoiseSchedule(make_betas("linear", T, 1e-6, 0.01))


def square_mask(batch, size, lo, hi):
    mask = torch.zeros(batch, 1, size, size)
    mask[:, :, lo:hi, lo:hi] = 1
    return mask


class PixelNet(nn.Module):
    """A per-pixel network: a change at one pixel of the input changes the output at that pixel only."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(6, 3, 1)

    def forward(self, x, gamma):
        return self.conv(x) * (1 + gamma.view(-1, 1, 1, 1))


@pytest.mark.parametrize("T", [10, 2000])
def test_sample_gamma_inside_its_interval(T):
    s = schedule(T)
    gamma, t = sample_gamma(s, 4096, torch.Generator().manual_seed(0), return_t=True)
    assert gamma.dtype == torch.float32 and gamma.shape == (4096,)
    assert t.min() >= 1 and t.max() <= T
    lo, hi = s.gammas[t].float(), s.gammas[t - 1].float()
    assert ((lo <= gamma) & (gamma <= hi)).all()
    assert not torch.equal(gamma, lo)  # continuous within the interval, not the grid value
    if T == 10:
        assert set(t.tolist()) == set(range(1, 11))


def test_sample_gamma_reproducible():
    a = sample_gamma(schedule(), 16, torch.Generator().manual_seed(3))
    b = sample_gamma(schedule(), 16, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


@pytest.mark.parametrize("kind", ["l1", "l2"])
def test_loss_of_zero_net_is_noise_moment_over_hole(kind):
    y0, cond, mask = torch.rand(4, 3, 8, 8) * 2 - 1, torch.randn(4, 3, 8, 8), square_mask(4, 8, 2, 6)
    loss = palette_loss(
        lambda x, g: torch.zeros(4, 3, 8, 8),
        y0,
        cond,
        mask,
        schedule(),
        torch.Generator().manual_seed(5),
        kind,
    )
    gen = torch.Generator().manual_seed(5)  # replay the draws: gamma first, then eps
    sample_gamma(schedule(), 4, gen)
    eps = torch.randn(4, 3, 8, 8, generator=gen)
    err = eps.abs() if kind == "l1" else eps.square()
    assert loss.item() == pytest.approx((err * mask).sum().item() / (mask.sum().item() * 3), rel=1e-6)


def test_network_input_known_region_is_clean():
    y0, cond, mask = torch.rand(2, 3, 8, 8) * 2 - 1, torch.randn(2, 3, 8, 8), square_mask(2, 8, 2, 6)
    seen = {}

    def spy(x, gamma):
        seen["x"], seen["gamma"] = x, gamma
        return torch.zeros(2, 3, 8, 8)

    palette_loss(spy, y0, cond, mask, schedule(), torch.Generator().manual_seed(1))
    x, known = seen["x"], (mask == 0).expand(2, 3, 8, 8)
    assert torch.equal(x[:, :3], cond)
    assert torch.equal(x[:, 3:][known], y0[known])
    assert not torch.allclose(x[:, 3:][~known], y0[~known])  # the hole is noised


def test_loss_ignores_everything_outside_the_hole():
    net = PixelNet()
    y0, cond, mask = torch.rand(2, 3, 8, 8) * 2 - 1, torch.rand(2, 3, 8, 8) * 2 - 1, square_mask(2, 8, 2, 6)
    outside = torch.randn(2, 3, 8, 8) * (1 - mask)

    def loss(net, y0, cond):
        return palette_loss(net, y0, cond, mask, schedule(), torch.Generator().manual_seed(2))

    base = loss(net, y0, cond)
    assert torch.equal(loss(net, y0 + outside, cond + outside), base)
    assert torch.equal(loss(lambda x, g: net(x, g) + 5 * outside, y0, cond), base)
    inside = torch.randn(2, 3, 8, 8) * mask  # the same change inside the hole does count
    assert not torch.equal(loss(lambda x, g: net(x, g) + inside, y0, cond), base)


def test_tiny_unet_overfits_eight_images():
    torch.manual_seed(0)
    cfg = tiny_cfg()
    net = UNet(cfg, 16)
    y0 = F.interpolate(torch.rand(8, 3, 4, 4) * 2 - 1, size=16, mode="bilinear", align_corners=False)
    mask = square_mask(8, 16, 4, 12)
    cond = y0 * (1 - mask)
    s = schedule()

    def eval_loss():  # the same gammas and noise every time
        with torch.no_grad():
            gen = torch.Generator().manual_seed(99)
            return sum(palette_loss(net, y0, cond, mask, s, gen).item() for _ in range(8)) / 8

    before = eval_loss()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(100):
        loss = palette_loss(net, y0, cond, mask, s, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    after = eval_loss()
    assert before == pytest.approx(1.0, abs=0.2)  # the zero-initialised net predicts eps_hat = 0
    assert after < 0.5 * before
