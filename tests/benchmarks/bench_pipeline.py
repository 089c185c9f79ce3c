"""Sampling and data-pipeline speed at the cpu preset (not part of the default test run).

Run: tox -e bench, or .venv/bin/pytest tests/benchmarks/bench_pipeline.py --benchmark-only -s
Asserted figures are ratios from alternated rounds (bench/perf/timing.py), never absolute numbers.
"""

from __future__ import annotations

import pytest
import torch

from bench.perf.data import pipeline
from bench.perf.evaluation import sampling
from bench.perf.timing import alternate
from bench.perf.train import preset_config, train_step
from model.unet import UNet

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def cfg():
    return preset_config("cpu")


def test_sampling(benchmark, cfg):
    """DDPM (T=20) and DDIM (k=5) on a batch of 4; sample() under inference_mode vs the same loop under no_grad."""
    t = benchmark.pedantic(lambda: sampling(cfg, CPU, batch=4, ddpm_steps=20, ddim_steps=5, rounds=3),
                           rounds=1, iterations=1)
    (_, ddpm), (_, ddim), (_, no_grad) = t.items()
    per_step = {"ddpm": ddpm.seconds / 20, "ddim": ddim.seconds / 5}
    benchmark.extra_info.update({"ddpm_ms_per_step": 1000 * per_step["ddpm"],
                                 "ddim_ms_per_step": 1000 * per_step["ddim"],
                                 "inference_mode_speedup": no_grad.seconds / ddim.seconds})
    print(f"\nper step: DDPM {1000 * per_step['ddpm']:.1f} ms, DDIM {1000 * per_step['ddim']:.1f} ms; "
          f"inference_mode vs no_grad x{no_grad.seconds / ddim.seconds:.2f}")
    # a step is one network call plus a few elementwise ops, whichever sampler
    assert 0.8 < per_step["ddpm"] / per_step["ddim"] < 1.25
    assert no_grad.seconds / ddim.seconds > 0.95  # inference_mode is never slower than no_grad


def test_data_pipeline_outruns_training(benchmark, cfg, tmp_path):
    """uint8 cache -> float batch -> task.make, against the training step, in the same rounds."""
    torch.manual_seed(0)
    step = train_step(UNet(cfg.model, cfg.data.image_size), cfg, CPU, cfg.model.channels_last)

    def measure():
        data = pipeline(tmp_path, 64, CPU, 3, ["inpainting (paper masks)", "inpainting (free-form masks)"])
        train = alternate({"train": (step, cfg.train.batch_size)}, 3, CPU)["train"]
        return {label: t.per_second / train.per_second for label, t in data.items()}

    ratios = benchmark.pedantic(measure, rounds=1, iterations=1)
    benchmark.extra_info.update(ratios)
    print("\ndata pipeline / training step images/s: " + ", ".join(f"{k} x{v:,.0f}" for k, v in ratios.items()))
    assert min(ratios.values()) > 10  # data prep is under 10 % of a step's time
