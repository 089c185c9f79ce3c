"""The core on a CUDA GPU: the same code as on the CPU, with bf16 autocast and (channels_last "auto") NCHW.

Skipped where torch sees no GPU (CI). Run on a GPU machine with `pytest -m cuda tests/test_cuda.py`
(scripts/gpu_check.sh runs it with the paper-scale step check and two studies on CUDA; results/gpu/ holds an H100 run).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _tiny import tiny_cfg

from model.checkpoint import latest_checkpoint, load_checkpoint
from model.config import TaskConfig
from model.objective import palette_loss
from model.sample import sample
from model.samplers import make_sampler
from model.schedule import NoiseSchedule, make_betas
from model.tasks import make_task
from model.trainer import Budget, train
from model.unet import UNet, unzero

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

CUDA = torch.device("cuda")


def _max_rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float().cpu() - b.float().cpu()).abs().max() / b.float().abs().max().clamp(min=1e-12))


def test_training_on_cuda_pauses_resumes_and_finishes_on_the_cpu(tmp_path, smoke_config, capfd):
    # A Colab-style life: a session on the GPU, a resumed session on the GPU, the rest on a laptop.
    cfg = smoke_config(train__subsets=2, train__epochs_per_subset=2)
    full = train(cfg, tmp_path / "full", device="cuda")
    first = train(cfg, tmp_path / "run", device="cuda", budget=Budget(epochs=1))
    second = train(cfg, tmp_path / "run", device="cuda", budget=Budget(epochs=1))
    capfd.readouterr()
    third = train(cfg, tmp_path / "run", device="cpu")
    assert (first.status, second.status, third.status) == ("paused", "paused", "done")
    assert second.resumed_from is not None and third.resumed_from is not None
    assert "written on another kind of device (cuda)" in capfd.readouterr().err
    assert [h["images_seen"] for h in third.history] == [h["images_seen"] for h in full.history]
    assert all(np.isfinite(h["loss"]) for h in third.history)
    # GPU sessions continue the GPU stream: same batches, masks and noise as the uninterrupted run, so the
    # same losses up to cuDNN's non-deterministic kernels.
    for a, b in zip(full.history[:2], third.history[:2], strict=True):
        assert abs(a["loss"] - b["loss"]) <= 0.02 * abs(a["loss"]), (a["loss"], b["loss"])
    ckpt = load_checkpoint(latest_checkpoint(tmp_path / "full" / "checkpoints"))
    assert ckpt["rng"]["generator_device"] == "cuda"
    assert all(t.device.type == "cpu" for t in ckpt["net"].values())


def test_the_loss_draws_the_same_numbers_on_cuda_as_on_the_cpu():
    torch.manual_seed(0)
    net = UNet(tiny_cfg(), image_size=16).eval()
    schedule = NoiseSchedule(make_betas("linear", 100, 1e-4, 0.02))
    y0 = torch.rand(4, 3, 16, 16) * 2 - 1
    cond, mask = make_task(TaskConfig()).make(
        y0, [torch.Generator().manual_seed(i) for i in range(4)])
    cpu = palette_loss(net, y0, cond, mask, schedule, torch.Generator().manual_seed(7))
    gpu = palette_loss(net.to(CUDA), y0.to(CUDA), cond.to(CUDA), mask.to(CUDA), schedule,
                       torch.Generator().manual_seed(7))
    # fp32 both (TF32 convolutions on the GPU): equal up to rounding only if gamma and eps are the same draws.
    assert abs(gpu.item() - cpu.item()) / cpu.item() < 1e-2


def test_sampling_on_cuda_is_seeded_and_keeps_the_known_pixels():
    torch.manual_seed(0)
    net = unzero(UNet(tiny_cfg(), image_size=16)).place(CUDA).eval()  # a prediction of 0 would copy the noise
    assert not net.channels_last and net.out[2].weight.is_contiguous()  # 'auto' is NCHW on CUDA
    y0 = torch.rand(3, 3, 16, 16, device=CUDA) * 2 - 1
    task = make_task(TaskConfig())
    cond, mask = task.make(y0, [torch.Generator().manual_seed(i) for i in range(3)])
    sampler = make_sampler("ddim", NoiseSchedule(make_betas("linear", 100, 1e-4, 0.02)), 10)

    def draw():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            return sample(net, cond, mask, y0, sampler, [torch.Generator(CUDA).manual_seed(i) for i in range(3)])

    a, b = draw(), draw()
    assert a.device.type == "cuda" and torch.isfinite(a).all()
    assert torch.equal(a, b)
    keep = mask.expand_as(a) == 0
    assert torch.equal(a[keep], y0.clamp(-1, 1)[keep])
    assert (a[~keep] - y0[~keep]).abs().mean() > 1e-3  # the hole was generated, not copied


def test_inception_features_on_cuda_match_the_cpu():
    from model.metrics.inception import extract_features

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(8, 32, 32, 3), dtype=np.uint8)
    cpu = torch.from_numpy(extract_features(images, device="cpu"))
    gpu = torch.from_numpy(extract_features(images, device="cuda"))
    rel = _max_rel(gpu, cpu)
    print(f"Inception features, CUDA vs CPU: max relative difference {rel:.2e}")
    assert rel < 2e-2  # cuDNN uses TF32 for convolutions by default
