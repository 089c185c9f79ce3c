"""Too few images (issue 16): FID of one image per folder is one line and exit 2, fewer than 2048 images
print FID@N, and KID below its subset size shrinks the subset (documented), never a crash deep in numpy."""

from __future__ import annotations

import math
import os
import re

import numpy as np
import pytest
from _reliability import run_subprocess
from PIL import Image

from model.errors import DataError
from model.metrics import fid, kid, reference


def folder(path: os.PathLike | bytes, n: int, seed: int = 0) -> str:
    """n small real-looking RGB PNGs (smooth noise) in a new folder; returns its path as str."""
    path = os.fsdecode(path)
    os.makedirs(path)
    rng = np.random.default_rng(seed)
    for i in range(n):
        base = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        Image.fromarray(base).resize((40, 40), Image.Resampling.BICUBIC).save(os.path.join(path, f"{i}.png"))
    return path


def test_bench_fid_one_image_each_is_one_line_exit_2(tmp_path):
    one_a = folder(os.fsencode(tmp_path) + b"/one\xe9", 1)  # a Latin-1 folder name, shown escaped
    one_b = folder(tmp_path / "b", 1, seed=1)
    proc = run_subprocess(["fid", one_a, one_b], timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr and proc.stdout == ""
    assert re.fullmatch(r"error: .*/one\\xe9: 1 image \(.*\.png.*\); FID needs at least 2 images per folder",
                        lines[0]), lines[0]


def test_bench_fid_two_images_each_is_a_finite_fid_at_2(tmp_path):
    a, b = folder(tmp_path / "a", 2), folder(tmp_path / "b", 2, seed=1)
    proc = run_subprocess(["fid", a, b, "--device", "cpu"], timeout=300)
    assert proc.returncode == 0, proc.stderr
    label, value = proc.stdout.strip().split(":  ")
    assert label == "FID@2" and math.isfinite(float(value)) and float(value) > 0
    assert float(value) == pytest.approx(fid.fid_from_folders(a, b), rel=1e-6)


def test_npz_counts_and_nan_statistics(tmp_path):
    a, b = folder(tmp_path / "a", 3), folder(tmp_path / "b", 4, seed=1)
    fid.save_stats(a, tmp_path / "a.npz")
    value, n = fid.fid_with_count(tmp_path / "a.npz", b)
    assert n == 3 and fid.fid_label(n) == "FID@3" and math.isfinite(value)
    np.savez(tmp_path / "theirs.npz", mu=np.zeros(2048), sigma=np.eye(2048))  # pytorch-fid's: no count
    assert fid.fid_with_count(tmp_path / "theirs.npz", tmp_path / "theirs.npz")[1] is None
    assert fid.fid_label(None) == "FID" and fid.fid_label(2048) == "FID" and fid.fid_label(2047) == "FID@2047"
    np.savez(tmp_path / "one.npz", mu=np.zeros(2048), sigma=np.full((2048, 2048), np.nan))  # from 1 image
    with pytest.raises(DataError, match=r"one\.npz: 'mu' or 'sigma' holds NaN"):
        fid.fid_from_folders(tmp_path / "one.npz", b)
    with pytest.raises(DataError, match="not a folder of images or a .npz"):
        fid.fid_from_folders(os.path.join(a, "0.png"), b)


def test_kid_shrinks_its_subset_to_the_smaller_set_and_refuses_one_image():
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((7, 16)), rng.standard_normal((40, 16)) + 0.3
    assert kid.kid_subset_size(7, 40) == 7 and kid.kid_subset_size(5000, 4000) == 1000
    mean, std = kid.kernel_inception_distance(x, y, n_subsets=50)  # subset size 1000 > 7 images: 7
    assert math.isfinite(mean) and std > 0  # spread from the 7-of-40 subsets of the larger set
    subsets = np.random.default_rng(0)
    by_hand = []
    for _ in range(50):
        i, j = subsets.choice(7, 7, replace=False), subsets.choice(40, 7, replace=False)
        by_hand.append(kid.mmd2_unbiased(x[i], y[j]))
    assert mean == pytest.approx(np.mean(by_hand))
    for a, b in ((x[:1], y), (x, y[:1]), (x[:0], y)):
        with pytest.raises(DataError, match="KID needs at least 2 images per set"):
            kid.kernel_inception_distance(a, b)
    with pytest.raises(ValueError, match="subset_size"):
        kid.kernel_inception_distance(x, y, subset_size=1)


def test_reference_statistics_refuse_one_image(tmp_path):
    with pytest.raises(DataError, match="at least 2 images, got 1"):
        reference.reference_stats(np.zeros((1, 8, 8, 3), np.uint8), {"n": 1}, tmp_path)
    assert not os.listdir(tmp_path)
