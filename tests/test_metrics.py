"""Metrics: Inception weight mapping, FID/KID against pytorch-fid, image metrics, reference cache.

Small images (32-48 px) on purpose: the network resizes every input to 299 px anyway.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import pytorch_fid.fid_score as pfs
import pytorch_fid.inception as pfi
import torch
import torch.nn.functional as F
from PIL import Image

from model.errors import DataError
from model.metrics import fid, image, inception, kid, reference

NOISE_LEVELS = (0.05, 0.15, 0.4)


def smooth_images(n: int, size: int, seed: int, noise: float = 0.0) -> np.ndarray:
    """uint8 NHWC: bicubic blobs of colour (photo-like low frequencies), optionally with pixel noise."""
    g = torch.Generator().manual_seed(seed)
    x = F.interpolate(torch.rand(n, 3, 4, 4, generator=g), size=(size, size), mode="bicubic")
    x = x + noise * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed + 1000))
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


@pytest.fixture(scope="module")
def mapped() -> dict[str, torch.Tensor]:
    return inception.mapped_state_dict()


@pytest.fixture(scope="module")
def feats() -> dict[float, np.ndarray]:
    """Features of 12 images, clean (key 0.0) and with increasing pixel noise."""
    return {lvl: inception.extract_features(smooth_images(12, 32, seed=1, noise=lvl), "cpu")
            for lvl in (0.0, *NOISE_LEVELS)}


def pytorch_fid_frechet(*stats: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SciPy 1.17 deprecates sqrtm(disp=False)
        return float(pfs.calculate_frechet_distance(*stats))


# --- Inception ---------------------------------------------------------------------------------------


def test_mapped_weights_match_fid_helper_torchscript(mapped):
    net = inception.build_inception(mapped)
    assert all(m.eps == 0.001 for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    x = torch.rand(4, 3, 40, 40, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = net(x)[0].flatten(1)
        # fid-helper's author: input range (-1, 1) i.e. 2x - 1, torch bilinear resize to 299.
        theirs = inception.load_torchscript()(2 * F.interpolate(x, size=(299, 299), mode="bilinear") - 1)
    assert ours.shape == theirs.shape == (4, 2048)
    assert (ours - theirs).abs().max().item() < 1e-4


def test_pytorch_fid_weights_preferred_when_cached(mapped, tmp_path, monkeypatch):
    os.makedirs(tmp_path / "checkpoints")
    small = {"Conv2d_1a_3x3.conv.weight": mapped["Conv2d_1a_3x3.conv.weight"]}
    torch.save(small, tmp_path / "checkpoints" / inception.PYTORCH_FID_FILE)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    assert inception.fid_weights().keys() == small.keys()
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty"))
    assert inception.fid_weights().keys() == mapped.keys()


def test_extract_features_accepts_uint8_and_float(feats):
    imgs = smooth_images(3, 32, seed=1)
    as_float = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255
    a = inception.extract_features(imgs, "cpu", batch_size=2)
    b = inception.extract_features(as_float, "cpu")
    assert a.dtype == np.float64 and a.shape == (3, 2048)
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(a, feats[0.0][:3], atol=1e-4)  # batch size does not matter


# --- FID / KID ---------------------------------------------------------------------------------------


def test_fid_zero_for_same_set_and_grows_with_noise(feats):
    mu, sigma = fid.feature_stats(feats[0.0])
    assert abs(fid.frechet_distance(mu, sigma, mu, sigma)) < 1e-6 * np.trace(sigma)
    assert abs(fid.fid_from_features(feats[0.0], feats[0.0])) < 1e-6
    scores = [fid.fid_from_features(feats[0.0], feats[lvl]) for lvl in NOISE_LEVELS]
    assert 0 < scores[0] < scores[1] < scores[2], scores


@pytest.mark.parametrize("d, n1, n2", [(64, 300, 200), (64, 20, 30), (128, 10, 500)])
def test_frechet_distance_equals_pytorch_fid(d, n1, n2):
    rng = np.random.default_rng(d + n1)
    a = rng.standard_normal((n1, d)) @ rng.standard_normal((d, d)) * 0.3
    b = rng.standard_normal((n2, d)) + 0.2
    stats = (*fid.feature_stats(a), *fid.feature_stats(b))
    ours, ref = fid.frechet_distance(*stats), pytorch_fid_frechet(*stats)
    assert isinstance(ours, float)
    assert ours == pytest.approx(ref, rel=1e-4)
    assert fid.fid_from_features(a, b) == pytest.approx(ref, rel=1e-4)
    assert fid.fid_from_features(b, a) == pytest.approx(ref, rel=1e-4)


def test_kid_near_zero_for_same_set_and_positive_when_shifted(feats):
    same, _ = kid.kernel_inception_distance(feats[0.0], feats[0.0], n_subsets=20)
    scores = [kid.kernel_inception_distance(feats[0.0], feats[lvl], n_subsets=20)[0] for lvl in NOISE_LEVELS]
    assert scores[-1] > 0 and scores[-1] > 10 * abs(same)
    assert scores[-1] > scores[0]
    assert np.sign(scores[-1]) == np.sign(fid.fid_from_features(feats[0.0], feats[NOISE_LEVELS[-1]]))
    again = kid.kernel_inception_distance(feats[0.0], feats[0.4], n_subsets=20, subset_size=len(feats[0.0]) // 2)
    assert again == kid.kernel_inception_distance(feats[0.0], feats[0.4], n_subsets=20,
                                                  subset_size=len(feats[0.0]) // 2)  # seeded subsets


def test_kid_formula_on_tiny_sets():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((5, 3)), rng.standard_normal((5, 3)) + 1

    def k(a, b):
        return (a @ b / 3 + 1) ** 3

    xx = sum(k(x[i], x[j]) for i in range(5) for j in range(5) if i != j) / 20
    yy = sum(k(y[i], y[j]) for i in range(5) for j in range(5) if i != j) / 20
    xy = sum(k(x[i], y[j]) for i in range(5) for j in range(5)) / 25
    mean, std = kid.kernel_inception_distance(x, y, n_subsets=3, subset_size=50)
    assert mean == pytest.approx(xx + yy - 2 * xy)
    assert np.isnan(std)  # every subset would be both whole sets: no spread to report


def test_kid_spread_over_subsets_smaller_than_the_sets():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((60, 8)), rng.standard_normal((60, 8)) + 0.5
    mean, std = kid.kernel_inception_distance(x, y, n_subsets=30, subset_size=20)
    assert std > 0 and abs(mean - kid.mmd2_unbiased(x, y)) < 3 * std  # unbiased: the full-set value is near


# --- folders and .npz, against pytorch-fid's own code path ---------------------------------------------


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("fid")
    for name, seed, noise in (("a", 10, 0.0), ("b", 20, 0.1)):
        os.makedirs(root / name)
        for i, img in enumerate(smooth_images(6, 32, seed=seed, noise=noise)):
            Image.fromarray(img).save(root / name / f"{i:03d}.png")
    (root / "a" / "notes.txt").write_text("ignored: not an image extension")
    return root


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore:Matrix is singular")
def test_fid_from_folders_matches_pytorch_fid(folders, mapped, monkeypatch):
    # pytorch-fid's own path (its dataset, loader, model, statistics, sqrtm), weights from fid-helper.
    monkeypatch.setattr(pfi, "load_state_dict_from_url", lambda url, *args, **kwargs: mapped)
    paths = [str(folders / "a"), str(folders / "b")]
    theirs = pfs.calculate_fid_given_paths(paths, batch_size=50, device="cpu", dims=2048, num_workers=0)
    ours = fid.fid_from_folders(*paths, device="cpu", batch_size=4)
    assert ours == pytest.approx(float(theirs), abs=5e-4)  # same to 3 decimals (measured: ~1e-5)
    # Features themselves: ours vs pytorch-fid's get_activations (eager, contiguous, no_grad).
    files = sorted(p for ext in pfs.IMAGE_EXTENSIONS for p in (folders / "a").glob(f"*.{ext}"))
    assert fid.image_files(paths[0]) == files
    own = pfs.get_activations(files, inception.build_inception(mapped), batch_size=50, num_workers=0)
    assert np.abs(fid.folder_features(paths[0]) - own).max() < 1e-4


def test_npz_stats_roundtrip(folders, tmp_path):
    a, b = str(folders / "a"), str(folders / "b")
    fid.save_stats(a, tmp_path / "a.npz")
    fid.save_stats(b, tmp_path / "b")  # like np.savez_compressed: ".npz" appended
    with pytest.raises(DataError, match="exists"):
        fid.save_stats(a, tmp_path / "a.npz")
    mu, sigma = pfs.compute_statistics_of_path(str(tmp_path / "a.npz"), None, 50, 2048, "cpu")
    assert mu.shape == (2048,) and sigma.shape == (2048, 2048)  # pytorch-fid reads our file
    both_npz = fid.fid_from_folders(tmp_path / "a.npz", str(tmp_path / "b.npz"))
    mixed = fid.fid_from_folders(tmp_path / "a.npz", b)
    assert both_npz == pytest.approx(mixed, rel=1e-6)
    with pytest.raises(DataError, match="invalid path"):
        fid.fid_from_folders(tmp_path / "missing", b)
    with pytest.raises(DataError, match="no images"):
        fid.fid_from_folders(tmp_path, b)


# --- image metrics -----------------------------------------------------------------------------------


def _pair(noise: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(smooth_images(2, 48, seed=seed)).permute(0, 3, 1, 2).float() / 127.5 - 1
    noisy = x + noise * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
    return x, noisy.clamp(-1, 1)


def test_psnr_ssim_identity_cap_and_noise():
    x, _ = _pair(0)
    np.testing.assert_array_equal(image.psnr(x, x).numpy(), image.PSNR_CAP_DB)
    np.testing.assert_array_equal(image.ssim(x, x).numpy(), 1.0)
    psnrs = [image.psnr(*_pair(s)).mean().item() for s in (0.02, 0.1, 0.3)]
    ssims = [image.ssim(*_pair(s)).mean().item() for s in (0.02, 0.1, 0.3)]
    assert psnrs[0] > psnrs[1] > psnrs[2] and 1 > ssims[0] > ssims[1] > ssims[2]
    x, y = _pair(0.1)
    mse = ((x - y) / 2).pow(2).flatten(1).mean(1).double()
    torch.testing.assert_close(image.psnr(x, y), 10 * torch.log10(1 / mse))


def test_masked_metrics_ignore_outside_hole():
    x, noisy = _pair(0.2)
    mask = torch.zeros(2, 1, 48, 48)
    mask[:, :, 12:36, 12:36] = 1
    y = torch.where(mask.bool(), x, noisy)  # differs only outside the hole
    m = image.image_metrics(y, x, mask)
    assert set(m) == {"l1", "psnr", "ssim", "l1_hole", "psnr_hole", "ssim_hole"}
    assert (m["l1"] > 0).all() and (m["l1_hole"] == 0).all() and (m["psnr_hole"] == image.PSNR_CAP_DB).all()
    y2 = torch.where(mask.bool(), noisy, x)  # differs only inside the hole
    np.testing.assert_allclose(image.l1(y2, x, mask).numpy() * mask[0].mean().item(), image.l1(y2, x).numpy())
    assert (image.ssim(y2, x, mask) < image.ssim(y2, x)).all()
    torch.testing.assert_close(image.ssim(y2, x, torch.ones(2, 1, 48, 48)), image.ssim(y2, x))
    assert np.isnan(image.l1(y2, x, torch.zeros(2, 1, 48, 48)).numpy()).all()
    with pytest.raises(ValueError, match="mask"):
        image.l1(y2, x, mask[:, :, :40])


def test_ssim_matches_scikit_image():
    metrics = pytest.importorskip("skimage.metrics")
    x, y = _pair(0.15, seed=3)
    ref = [metrics.structural_similarity(((a + 1) / 2).permute(1, 2, 0).double().numpy(),
                                         ((b + 1) / 2).permute(1, 2, 0).double().numpy(), channel_axis=2,
                                         data_range=1.0, gaussian_weights=True, sigma=1.5,
                                         use_sample_covariance=False) for a, b in zip(y, x, strict=True)]
    np.testing.assert_allclose(image.ssim(y, x).numpy(), ref, atol=1e-6)


# --- reference statistics cache ----------------------------------------------------------------------


def test_reference_stats_cached(tmp_path, monkeypatch):
    imgs = smooth_images(3, 32, seed=5)
    key = {"source": "synthetic", "split": "val", "image_size": 32, "n": 3}
    first = reference.reference_stats(imgs, key, tmp_path, "cpu")
    files = os.listdir(tmp_path)
    assert len(files) == 1 and files[0].startswith("ref-") and files[0].endswith(".npz")
    np.testing.assert_allclose(first["mu"], first["features"].mean(0))

    def fail(*args, **kwargs):
        raise AssertionError("should have been read from the cache")

    monkeypatch.setattr(reference, "extract_features", fail)
    second = reference.reference_stats(imgs, dict(reversed(key.items())), tmp_path, "cpu")
    for name in ("mu", "sigma", "features"):
        np.testing.assert_array_equal(first[name], second[name])
    with pytest.raises(AssertionError, match="cache"):  # another key -> another file
        reference.reference_stats(imgs, {**key, "split": "test"}, tmp_path, "cpu")
    with pytest.raises(AssertionError, match="cache"):  # same key, other pixels (a photo replaced) -> recomputed
        changed = imgs.copy()
        changed[0, 0, 0, 0] ^= 1
        reference.reference_stats(changed, key, tmp_path, "cpu")
    path = reference.cache_path(key, imgs, tmp_path)
    with open(path, "wb") as fh:
        fh.write(b"truncated")
    monkeypatch.undo()
    third = reference.reference_stats(imgs, key, tmp_path, "cpu")  # corrupt file -> recomputed
    np.testing.assert_allclose(third["mu"], first["mu"])
