"""Trivial baselines (model/baselines.py) on inputs whose answers are known by hand, and their scores on the
evaluator's own samples (same conditions, masks and metrics as a model's evaluation, cached)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from model.baselines import BASELINES, biharmonic, edge_replication, gray_copy, mean_fill, trivial_scores
from model.metrics.image import PSNR_CAP_DB, image_metrics
from model.tasks import Colorization, Inpainting, Uncropping


def _gens(n: int, seed: int = 0) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(seed + i) for i in range(n)]


def _photo(n: int = 3, size: int = 16, seed: int = 0) -> torch.Tensor:
    """Smooth random colour images [n, 3, size, size] in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 4, 4, generator=g) * 2 - 1
    return torch.nn.functional.interpolate(coarse, size=size, mode="bilinear", align_corners=False)


def test_gray_copy_of_a_gray_target_scores_as_the_identity():
    luma = _photo()[:, :1]
    y0 = luma.expand(-1, 3, -1, -1).contiguous()  # a gray image: r = g = b
    cond, mask = Colorization().make(y0)
    out = gray_copy(cond, mask)
    assert torch.allclose(out, y0, atol=1e-6)
    scores = image_metrics(out, y0)
    assert np.allclose(scores["l1"], 0, atol=1e-6) and np.all(scores["psnr"] >= 100 - 1e-9)
    assert scores["psnr"].max() == PSNR_CAP_DB and np.allclose(scores["ssim"], 1.0)
    colour = _photo(seed=1)  # a colour target is not reproduced by its gray copy
    assert image_metrics(gray_copy(*Colorization().make(colour)), colour)["psnr"].max() < 40


@pytest.mark.parametrize("kind", ["paper", "center", "free_form", "irregular", "bbox"])
def test_mean_fill_of_a_constant_image_is_exact(kind):
    colours = torch.tensor([[0.3, -0.5, 0.9], [-1.0, 0.0, 1.0]]).view(2, 3, 1, 1)
    y0 = colours.expand(-1, -1, 16, 16).contiguous()
    cond, mask = Inpainting(kind).make(y0, _gens(2))
    assert mask.sum() > 0 and not torch.allclose(cond, y0)  # the hole holds noise
    assert torch.allclose(mean_fill(cond, mask), y0, atol=1e-6)


def test_mean_fill_uses_only_the_known_pixels():
    y0 = torch.zeros(1, 3, 8, 8)
    y0[..., :4] = 1.0  # left half white, right half black
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :2, :] = 1  # hide the top two rows: the known part is still half white
    out = mean_fill(y0 + 5 * mask, mask)  # whatever is in the hole must not count
    assert torch.allclose(out[..., :2, :], torch.full((1, 3, 2, 8), 0.5))


@pytest.mark.parametrize("task", [Inpainting("paper"), Inpainting("irregular"), Uncropping("random"),
                                  Uncropping("border")])
def test_classical_inpainting_never_changes_known_pixels(task):
    y0 = _photo(4, seed=2)
    cond, mask = task.make(y0, _gens(4, seed=7))
    out = biharmonic(cond, mask)
    known = (mask == 0).expand_as(out)
    assert out.shape == y0.shape and torch.equal(out[known], cond[known])
    assert out.abs().max() <= 1.0
    err_fill, err_noise = (out - y0).abs()[~known].mean(), (cond - y0).abs()[~known].mean()
    assert err_fill < err_noise / 3  # the smooth fill is far closer to the photo than the noise it replaced


def test_biharmonic_fills_a_linear_ramp_exactly():
    ramp = torch.linspace(-0.8, 0.8, 16).view(1, 1, 1, 16).expand(1, 3, 16, -1).contiguous()
    cond, mask = Inpainting("center").make(ramp, _gens(1))
    assert torch.allclose(biharmonic(cond, mask), ramp, atol=1e-4)  # a linear function is biharmonic


def test_edge_replication_repeats_the_known_edge():
    y0 = _photo(1, size=8, seed=3)
    cond, mask = Uncropping("left").make(y0, _gens(1))  # columns 0-3 hidden, column 4 is the edge
    out = edge_replication(cond, mask)
    assert torch.equal(out[..., 4:], y0[..., 4:])
    assert torch.equal(out[..., :4], y0[..., 4:5].expand(-1, -1, -1, 4))
    cond, mask = Uncropping("border").make(y0, _gens(1))  # only the 4x4 centre is known
    padded = np.pad(y0[0, :, 2:6, 2:6].numpy(), ((0, 0), (2, 2), (2, 2)), mode="edge")
    assert np.array_equal(edge_replication(cond, mask)[0].numpy(), padded)


def test_a_fill_needs_known_pixels():
    with pytest.raises(ValueError, match="known pixels"):
        mean_fill(torch.zeros(1, 3, 4, 4), torch.ones(1, 1, 4, 4))


@pytest.mark.parametrize("task", ["colorization", "inpainting", "uncropping"])
def test_trivial_scores_are_the_evaluators_scores_of_its_own_samples(smoke_config, task, tmp_path):
    from model.evaluate import Evaluator
    from model.unet import UNet

    cfg = smoke_config(task__name=task, eval__n_samples=5, eval__batch_size=2, data__cache_dir=str(tmp_path))
    scores = trivial_scores(cfg)
    assert list(scores) == list(BASELINES[task])
    ev = Evaluator(cfg, "cpu")
    y0, cond, mask = ev.inputs()
    net = UNet(cfg.model, image_size=cfg.data.image_size).eval()
    _, gen_cond, gen_mask, _, _ = ev.generate(net)  # the conditions a model is evaluated on
    assert torch.equal(cond, gen_cond) and torch.equal(mask, gen_mask)
    for name, fn in BASELINES[task].items():
        expected = {**ev.score(fn(cond, mask), mask), "n_samples": 5}
        assert scores[name] == pytest.approx(expected, nan_ok=True), name
    assert scores[list(scores)[0]]["psnr"] > 5


def test_trivial_scores_are_cached_per_evaluation_setting(smoke_config, tmp_path):
    cfg = smoke_config(task__name="inpainting", eval__n_samples=4, data__cache_dir=str(tmp_path),
                       eval__metrics=["kid", "psnr"])
    first = trivial_scores(cfg)
    files = list((tmp_path / "baselines").glob("trivial-*.json"))
    assert len(files) == 1 and set(first["mean_fill"]) >= {"kid", "kid_std", "psnr", "psnr_hole", "n_samples"}
    payload = json.loads(files[0].read_text())
    payload["scores"]["mean_fill"]["psnr"] = -1.0  # a cached value is used as is ...
    files[0].write_text(json.dumps(payload))
    assert trivial_scores(cfg)["mean_fill"]["psnr"] == -1.0
    other_seed = cfg.model_copy(deep=True)
    other_seed.eval.seed += 1  # ... but another evaluation setting gets its own entry
    assert trivial_scores(other_seed)["mean_fill"]["psnr"] != first["mean_fill"]["psnr"]
    assert len(list((tmp_path / "baselines").glob("trivial-*.json"))) == 2
    mmse = cfg.model_copy(deep=True)
    mmse.eval.mmse_samples = 3  # a deterministic baseline is its own mean: *_mmse equal the single-output scores
    scores = trivial_scores(mmse)["mean_fill"]
    assert scores["psnr_mmse"] == scores["psnr"] == first["mean_fill"]["psnr"]
    assert scores["psnr_hole_mmse"] == scores["psnr_hole"] and "kid_mmse" not in scores
    assert len(list((tmp_path / "baselines").glob("trivial-*.json"))) == 3


def test_a_replaced_photo_is_scored_afresh(smoke_config, tmp_path):
    """Same folder, same names and count, one photo's pixels replaced: the cached scores must not be reused."""
    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(10):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(photos / f"p{i}.png")
    cfg = smoke_config(task__name="inpainting", eval__n_samples=2, eval__metrics=["psnr"],
                       data__source="folder", data__path=str(photos), data__test_fraction=0.5,
                       data__cache_dir=str(tmp_path / "cache"))
    first = trivial_scores(cfg)
    for path in photos.iterdir():  # every photo becomes flat grey: same names, new pixels
        Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(path)
    again = trivial_scores(cfg)
    assert again["mean_fill"]["psnr"] != first["mean_fill"]["psnr"]
    assert len(list((tmp_path / "cache" / "baselines").glob("trivial-*.json"))) == 2
