import pytest
import torch

from model.errors import ConfigError
from model.masks import MASKS, make_masks


def gens(seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


@pytest.mark.parametrize("kind", sorted(MASKS))
def test_shape_values_and_nonempty(kind):
    m = make_masks(kind, 32, gens(range(8)))
    assert m.shape == (8, 1, 32, 32) and m.dtype == torch.float32
    assert set(m.unique().tolist()) <= {0.0, 1.0}
    area = m.mean(dim=(1, 2, 3))
    assert (area > 0).all() and (area < 1).all()


@pytest.mark.parametrize("kind", sorted(MASKS))
def test_row_depends_only_on_its_generator(kind):
    alone = make_masks(kind, 32, gens([5]))
    in_batch = make_masks(kind, 32, gens([1, 2, 5, 9]))
    again = make_masks(kind, 32, gens([5, 7]))
    assert torch.equal(alone[0], in_batch[2]) and torch.equal(alone[0], again[0])


@pytest.mark.parametrize("kind", ["paper", "free_form", "irregular", "bbox", "random"])
def test_random_kinds_vary_with_seed(kind):
    m = make_masks(kind, 32, gens(range(16)))
    assert len({tuple(row.flatten().tolist()) for row in m}) > 1


def test_paper_mask_is_a_quarter_near_the_centre_inside_the_image():
    for size in (32, 63, 128):
        m = make_masks("paper", size, gens(range(200)))[:, 0]
        area = m.mean(dim=(1, 2))
        assert ((area >= 0.20) & (area <= 0.30)).all()
        rows, cols = m.amax(2), m.amax(1)  # [B, H], [B, W]: which rows / columns the hole touches
        top, height = rows.argmax(1), rows.sum(1)
        left, width = cols.argmax(1), cols.sum(1)
        assert torch.equal(height * width, m.sum(dim=(1, 2)))  # one solid box
        cy, cx = top + height / 2, left + width / 2
        assert ((cy - size / 2).abs() <= size / 16 + 1).all() and (
            (cx - size / 2).abs() <= size / 16 + 1
        ).all()
        assert (
            len(set(top.tolist())) > 1 and len(set(left.tolist())) > 1
        )  # jittered, not Palette's fixed centre box


def test_center_mask_is_exactly_the_middle_quarter():
    m = make_masks("center", 64, gens([0]))[0, 0]
    assert m.sum() == 64 * 64 / 4
    assert m[16:48, 16:48].all() and m.sum() == m[16:48, 16:48].sum()


def test_uncrop_sides_hide_the_promised_half():
    left, right, top, bottom = (
        make_masks(s, 32, gens([0]))[0, 0] for s in ("left", "right", "top", "bottom")
    )
    assert left[:, :16].all() and not left[:, 16:].any()
    assert right[:, 16:].all() and not right[:, :16].any()
    assert top[:16].all() and not top[16:].any()
    assert bottom[16:].all() and not bottom[:16].any()


def test_border_is_a_frame_around_a_known_centre():
    m = make_masks("border", 32, gens([0]))[0, 0]
    assert not m[8:24, 8:24].any()
    assert m[:8].all() and m[24:].all() and m[:, :8].all() and m[:, 24:].all()


def test_random_uncrop_draws_every_side():
    m = make_masks("random", 16, gens(range(64)))[:, 0]
    kinds = {tuple(row.flatten().tolist()) for row in m}
    assert len(kinds) == 5


def test_bbox_respects_palette_margins():
    m = make_masks("bbox", 128, gens(range(50)))[:, 0]
    margin = 10  # Palette's 20 px at 256
    assert not m[:, :margin].any() and not m[:, -margin:].any()
    assert not m[:, :, :margin].any() and not m[:, :, -margin:].any()
    area = m.mean(dim=(1, 2))
    assert (area <= 0.25).all() and (area >= (44 / 128) ** 2).all()  # side >= 128/2 - 40/256*128


def test_non_square_and_single_generator():
    m = make_masks("paper", (32, 48), torch.Generator().manual_seed(0), batch=3)
    assert m.shape == (3, 1, 32, 48)
    assert m[0].mean() == pytest.approx(0.25)


def test_unknown_kind_and_wrong_generator_count():
    with pytest.raises(ConfigError, match="task.mask"):
        make_masks("stars", 32, gens([0]))
    with pytest.raises(ValueError, match="one per row"):
        make_masks("paper", 32, gens([0, 1]), batch=3)
