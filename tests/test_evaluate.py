"""Evaluation of a trained run (EMA weights, seeded samples, PNGs, metrics) and the one-run CLI commands."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import yaml
from PIL import Image

from bench.cli import main
from model.evaluate import evaluate
from model.trainer import train


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from bench.presets import SCALES
    from bench.study import resolve_config

    cfg = resolve_config([("preset", SCALES["smoke"]),
                          ("test", {"data.source": "synthetic-faces", "train.epochs": 2, "eval.n_samples": 6})])
    run = tmp_path_factory.mktemp("eval") / "run"
    train(cfg, run, device="cpu")
    return run


def test_evaluate_is_seeded_and_writes_samples_and_triplets(trained_run):
    a = evaluate(trained_run, n_samples=6, steps=3, seed=5, device="cpu")
    b = evaluate(trained_run, n_samples=6, steps=3, seed=5, device="cpu")
    for key in ("fid", "kid", "l1", "psnr", "ssim", "l1_hole", "psnr_hole", "ssim_hole"):
        assert math.isfinite(a[key]) and a[key] == b[key], key
    c = evaluate(trained_run, n_samples=6, steps=3, seed=6, device="cpu")
    assert c["l1"] != a["l1"]  # another seed, other masks and noise
    assert a["n_samples"] == 6 and a["sampler"] == "ddim-3" and a["sample_seconds_per_image"] > 0
    out = trained_run / "eval" / "test-ddim3-n6-seed5"
    assert a["out_dir"] == str(out)
    samples = sorted((out / "samples").glob("*.png"))
    assert len(samples) == 6 and Image.open(samples[0]).size == (16, 16)
    grid = Image.open(next(out.glob("triplets-epoch*.png")))
    assert grid.size == (3 * 16, 4 * 16)  # ground truth | input | output, eval.save_images rows
    assert (out / "denoising-strip.png").exists()
    assert json.loads((out / "metrics.json").read_text())["l1"] == a["l1"]


def test_known_pixels_of_inpainting_samples_are_the_ground_truth(trained_run):
    from model.evaluate import Evaluator, load_ema_network

    net, cfg, _ = load_ema_network(trained_run, "cpu")
    ev = Evaluator(cfg, "cpu", None, "test", n_samples=4, steps=2, seed=0)
    out, cond, mask, _, _ = ev.generate(net)
    gt = np.asarray(ev.targets, dtype=np.float32) / 127.5 - 1
    known = (mask[:, 0] == 0).numpy()
    got = out.permute(0, 2, 3, 1).numpy()
    assert np.allclose(got[known], gt[known], atol=1e-6)
    assert 0.2 < mask.mean().item() < 0.3  # the paper's mask: about a quarter of the image


def test_mmse_samples_score_the_mean_of_fresh_draws_and_change_nothing_else(trained_run):
    # eval.mmse_samples = 3: L1/PSNR/SSIM also of the mean of three draws with fresh noise (the posterior-mean
    # estimate); the first draw, FID, KID and the single-sample metrics are the ones of mmse_samples = 1, and
    # a config at 1 has the identity of one written before the key existed.
    import torch

    from model.config import run_identity
    from model.evaluate import Evaluator, load_ema_network
    from model.metrics.image import image_metrics

    net, cfg, _ = load_ema_network(trained_run, "cpu")
    one = Evaluator(cfg, "cpu", None, "test", n_samples=6, steps=3, seed=5)(net, 1)
    ev = Evaluator(cfg, "cpu", None, "test", n_samples=6, steps=3, seed=5, mmse_samples=3)
    three = ev(net, 1)
    def same(m):  # as JSON: kid_std is NaN for so few samples
        return json.dumps({k: v for k, v in m.items() if "mmse" not in k and "seconds" not in k}, sort_keys=True)
    assert same(three) == same(one)
    draws = [ev.generate(net, draw=k) for k in range(3)]
    assert not torch.equal(draws[0][0], draws[1][0]) and not torch.equal(draws[1][0], draws[2][0])
    mask = draws[0][2]
    known = mask[:, :1].expand_as(draws[0][0]) == 0
    assert torch.equal(draws[1][0][known], draws[0][0][known])  # fresh noise, same inputs: known pixels kept
    want = image_metrics(torch.stack([d[0] for d in draws]).mean(0), ev.ground_truth(), mask)
    for key in ("l1", "psnr", "ssim", "l1_hole", "psnr_hole", "ssim_hole"):
        assert three[f"{key}_mmse"] == pytest.approx(float(want[key].mean()), rel=1e-6), key
    assert three["mmse_samples"] == 3 and "mmse_samples" not in one
    assert "mmse_samples" not in run_identity(cfg)["eval"]
    more = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"mmse_samples": 3})})
    assert run_identity(more)["eval"]["mmse_samples"] == 3


def test_bench_train_and_evaluate_commands(tmp_path, capsys):
    config = tmp_path / "one.yaml"
    config.write_text(yaml.safe_dump({"data": {"source": "synthetic-landscapes"}, "task": {"name": "colorization"},
                                      "train": {"epochs": 2}, "eval": {"n_samples": 4, "metrics": ["l1", "psnr"]}}))
    run = tmp_path / "run"
    assert main(["train", str(config), "--scale", "smoke", "--run-dir", str(run), "--device", "cpu",
                 "--session-budget", "1ep"]) == 0
    assert len(json.loads((run / "history.json").read_text())) == 1
    assert main(["train", str(config), "--scale", "smoke", "--run-dir", str(run), "--device", "cpu"]) == 0
    assert len(json.loads((run / "history.json").read_text())) == 2
    capsys.readouterr()
    assert main(["evaluate", str(run), "--n-samples", "4", "--steps", "2", "--device", "cpu"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["n_samples"] == 4 and "psnr" in metrics and "l1_hole" not in metrics  # colorization
    assert "psnr_mmse" not in metrics
    assert main(["evaluate", str(run), "--n-samples", "4", "--steps", "2", "--device", "cpu",
                 "--mmse-samples", "2"]) == 0
    printed = capsys.readouterr()
    mmse = json.loads(printed.out)
    assert f"in {run / 'eval' / 'test-ddim2-n4-seed1234-mmse2'}" in printed.err
    assert mmse["psnr"] == metrics["psnr"] and mmse["mmse_samples"] == 2 and "ssim_mmse" not in mmse  # not asked for
    assert math.isfinite(mmse["psnr_mmse"]) and mmse["l1_mmse"] != mmse["l1"]
    for bad in ("0", "-2", "abc"):
        assert main(["evaluate", str(run), "--mmse-samples", bad]) == 2
        err = capsys.readouterr().err
        assert f"--mmse-samples: must be an integer >= 1, got '{bad}'" in err and len(err.strip().splitlines()) == 1


def test_bench_train_refuses_a_bad_config(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("train: {epochs: 0}\n")
    assert main(["train", str(config), "--scale", "smoke", "--run-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert str(config) in err and "train.epochs" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_bench_fid_on_stats_equals_pytorch_fid(tmp_path, capsys):
    import warnings

    from pytorch_fid.fid_score import calculate_frechet_distance

    rng = np.random.default_rng(0)
    stats = []
    for i, shift in enumerate((0.0, 0.3)):
        feats = rng.normal(shift, 1.0, size=(300, 64))
        mu, sigma = feats.mean(0), np.cov(feats, rowvar=False)
        np.savez(tmp_path / f"s{i}.npz", mu=mu, sigma=sigma)
        stats.append((mu, sigma))
    assert main(["fid", str(tmp_path / "s0.npz"), str(tmp_path / "s1.npz"), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed.startswith("FID:  ")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = calculate_frechet_distance(*stats[0], *stats[1])
    assert f"{float(printed.split()[-1]):.3f}" == f"{expected:.3f}"


def test_full_chain_ddpm_timing_is_recorded_at_the_final_evaluation(trained_run):
    from model.evaluate import Evaluator, load_ema_network

    net, cfg, _ = load_ema_network(trained_run, "cpu")
    cfg = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"ddpm_timing_samples": 1}),
                                 "diffusion": cfg.diffusion.model_copy(update={"timesteps": 20})})
    ev = Evaluator(cfg, "cpu", None, "test", n_samples=2, steps=2, seed=0)
    final = ev(net, cfg.train.total_epochs)
    assert final["ddpm_seconds_per_image"] > 0
    assert "ddpm_seconds_per_image" not in ev(net, 1)  # only at the final evaluation
