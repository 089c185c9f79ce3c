"""Shared test setup: one CPU thread (the machine has two cores, and oversubscribed OpenMP threads are
many times slower than one), and small configs built from the `smoke` preset."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)


@pytest.fixture
def smoke_config():
    """RunConfig at smoke scale on a synthetic source, with `overrides` as dotted keys."""
    from bench.presets import SCALES
    from bench.study import resolve_config

    def make(**overrides):
        base = {"data.source": "synthetic-faces", "eval.metrics": ["l1", "psnr", "ssim"]}
        dotted = {k.replace("__", "."): v for k, v in overrides.items()}
        return resolve_config([("preset", SCALES["smoke"]), ("test", {**base, **dotted})])

    return make


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Decoded-image caches go to a per-session folder unless a test sets its own."""
    monkeypatch.setenv("PALETTE_BENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
