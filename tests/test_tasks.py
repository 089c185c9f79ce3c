import pytest
import torch

from model.config import TaskConfig
from model.tasks import Colorization, Inpainting, Uncropping, make_task


def gens(seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


def images(b=4, size=16):
    return torch.rand(b, 3, size, size, generator=torch.Generator().manual_seed(99)) * 2 - 1


@pytest.mark.parametrize(
    "cfg, cls",
    [
        (TaskConfig(name="inpainting", mask="free_form"), Inpainting),
        (TaskConfig(name="colorization"), Colorization),
        (TaskConfig(name="uncropping", uncrop="left"), Uncropping),
    ],
)
def test_make_task_picks_the_class(cfg, cls):
    task = make_task(cfg)
    assert isinstance(task, cls) and task.name.startswith(cfg.name)


@pytest.mark.parametrize("cfg", [TaskConfig(), TaskConfig(name="uncropping")])
def test_cond_is_y0_where_known_and_noise_where_unknown(cfg):
    y0 = images()
    cond, mask = make_task(cfg).make(y0, gens(range(4)))
    assert cond.shape == y0.shape and mask.shape == (4, 1, 16, 16)
    known = (mask == 0).expand_as(y0)
    assert torch.equal(cond[known], y0[known])
    unknown = cond[~known]
    assert unknown.numel() > 0 and not torch.equal(unknown, y0[~known])
    assert unknown.abs().max() > 1  # Gaussian noise leaves [-1, 1]; y0 never does
    assert abs(unknown.mean()) < 0.2 and 0.8 < unknown.std() < 1.2


def test_inpainting_row_independent_of_batch():
    y0 = images()
    task = Inpainting("irregular")
    cond_b, mask_b = task.make(y0, gens([10, 11, 12, 13]))
    cond_1, mask_1 = task.make(y0[2:3], gens([12]))
    assert torch.equal(cond_b[2], cond_1[0]) and torch.equal(mask_b[2], mask_1[0])


def test_colorization_is_grey_with_all_ones_mask():
    y0 = images()
    cond, mask = Colorization().make(y0, gens(range(4)))
    assert torch.equal(cond[:, 0], cond[:, 1]) and torch.equal(cond[:, 1], cond[:, 2])
    assert torch.equal(mask, torch.ones(4, 1, 16, 16))
    expected = 0.299 * y0[:, 0] + 0.587 * y0[:, 1] + 0.114 * y0[:, 2]
    assert torch.allclose(cond[:, 0], expected, atol=1e-6)
    white = torch.ones(1, 3, 4, 4)
    assert torch.allclose(Colorization().make(white, gens([0]))[0], white)


def test_bad_input_shape():
    with pytest.raises(ValueError, match="B, 3, H, W"):
        Colorization().make(torch.zeros(2, 1, 8, 8), gens([0, 1]))
