"""The held-out loss (model/heldout.py): its formula, its determinism, that it falls as a model learns, and how
the trainer records it between the sample-based evaluations (eval.loss_every_epochs)."""

from __future__ import annotations

import math

import pytest
import torch
from _tiny import eight_masked_images, tiny_cfg

from model.config import EvalConfig, RunConfig
from model.heldout import HeldOutLoss, fixed_levels
from model.objective import palette_loss
from model.schedule import NoiseSchedule, make_betas
from model.unet import UNet, unzero

SCHEDULE = NoiseSchedule(make_betas("linear", 100, 1e-4, 0.05))


def test_the_levels_are_the_centres_of_equal_bins_of_t():
    g = fixed_levels(SCHEDULE, 4)
    assert torch.equal(g, SCHEDULE.gammas[[12, 38, 62, 88]])  # round((k + 1/2) * 100 / 4); round-half-even
    assert bool((g[1:] < g[:-1]).all())  # noisiest last
    assert fixed_levels(SCHEDULE, 1).item() == SCHEDULE.gammas[50].item()
    with pytest.raises(ValueError, match="at least one"):
        fixed_levels(SCHEDULE, 0)


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_it_is_the_eps_mse_over_the_unknown_pixels_at_the_fixed_levels(prediction):
    torch.manual_seed(0)
    net = unzero(UNet(tiny_cfg(), 16)).eval()
    y0, cond, mask = eight_masked_images()
    loss = HeldOutLoss(y0, cond, mask, SCHEDULE, 3, prediction, batch_size=3)
    assert loss(net) == loss(net)  # nothing drawn per call
    assert HeldOutLoss(y0, cond, mask, SCHEDULE, 3, prediction, batch_size=8)(net) == pytest.approx(loss(net), rel=1e-6)
    errors = []
    with torch.no_grad():
        for k, g in enumerate(fixed_levels(SCHEDULE, 3).tolist()):
            eps = loss.eps[k]
            y_t = math.sqrt(g) * y0 + math.sqrt(1 - g) * eps
            out = net(torch.cat([cond, y_t * mask + y0 * (1 - mask)], 1), torch.full((8,), g))
            eps_hat = {"eps": out, "x0": (y_t - math.sqrt(g) * out) / math.sqrt(1 - g),
                       "v": math.sqrt(1 - g) * y_t + math.sqrt(g) * out}[prediction]
            errors.append(((eps_hat - eps) ** 2 * mask).sum() / (3 * mask.sum()))
    assert loss(net) == pytest.approx(float(torch.stack(errors).mean()), rel=1e-5)


def test_it_falls_as_a_tiny_model_overfits_its_images():
    torch.manual_seed(0)
    y0, cond, mask = eight_masked_images()
    net = UNet(tiny_cfg(), 16)
    loss = HeldOutLoss(y0, cond, mask, SCHEDULE, 4, "v")
    before = loss(net.eval())
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(0)
    net.train()
    for _ in range(150):
        opt.zero_grad()
        palette_loss(net, y0, cond, mask, SCHEDULE, gen, prediction="v").backward()
        opt.step()
    assert loss(net.eval()) < 0.6 * before


def test_loss_every_epochs_needs_levels_and_the_schedule_of_calls():
    with pytest.raises(ValueError, match="eval.loss_every_epochs=2 needs eval.loss_levels"):
        EvalConfig(loss_every_epochs=2)
    e = EvalConfig(every_epochs=4, loss_every_epochs=3, loss_levels=2)
    assert [n for n in range(1, 11) if e.due(n, 10)] == [3, 4, 6, 8, 9, 10]
    assert [n for n in range(1, 11) if e.loss_only(n, 10)] == [3, 6, 9]


def test_the_trainer_records_the_loss_between_the_sample_based_evaluations(tmp_path):
    from bench.presets import SCALES
    from bench.study import resolve_config
    from model.config import run_identity
    from model.evaluate import Evaluator
    from model.trainer import train

    cfg = resolve_config([("preset", SCALES["smoke"]),
                          ("test", {"data.source": "synthetic-faces", "train.epochs": 4, "eval.n_samples": 4,
                                    "eval.metrics": ["kid", "l1"], "eval.loss_levels": 2,
                                    "eval.loss_every_epochs": 2})])
    assert isinstance(cfg, RunConfig)
    history = train(cfg, tmp_path / "run", device="cpu", evaluate_fn=Evaluator(cfg, "cpu")).history
    metrics = [h["metrics"] for h in history]
    assert metrics[0] == {}
    assert set(metrics[1]) == {"val_loss", "eval_seconds", "eval_cpu_seconds"}  # no sampling at epoch 2
    assert {"val_loss", "kid", "l1"} <= set(metrics[3])  # the final one samples too
    assert all(math.isfinite(m["val_loss"]) and m["val_loss"] > 0 for m in (metrics[1], metrics[3]))
    # at the old behaviour the keys are not part of a run's identity (published runs keep their keys)
    off = resolve_config([("preset", SCALES["smoke"]), ("test", {"data.source": "synthetic-faces"})])
    assert "loss_levels" not in run_identity(off)["eval"] and run_identity(cfg)["eval"]["loss_levels"] == 2
