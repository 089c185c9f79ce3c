"""Inpainting and uncropping masks: float [B, 1, H, W], 1 = unknown (to generate), 0 = known.

Every random draw of row i comes from generators[i], so sample i's mask is the same whatever the batch
(edm's per-sample seeding). A single generator may be passed instead for training batches.
Sizes of Palette's masks (random_bbox, brush_stroke_mask) were tuned at 256 px; they scale with H, W here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from model.errors import ConfigError

Generators = torch.Generator | Sequence[torch.Generator]
UNCROP_SIDES = ("left", "right", "top", "bottom", "border")


def _uniform(g: torch.Generator, low: float = 0.0, high: float = 1.0) -> float:
    return low + (high - low) * torch.rand((), generator=g, device=g.device).item()


def _randint(g: torch.Generator, low: int, high: int) -> int:
    """Uniform integer in [low, high] (both inclusive)."""
    return int(torch.randint(low, high + 1, (), generator=g, device=g.device).item())


def _box(h: int, w: int, top: int, left: int, height: int, width: int) -> torch.Tensor:
    mask = torch.zeros(h, w)
    mask[top : top + height, left : left + width] = 1.0
    return mask


# ---- inpainting masks: one function per kind, (H, W, generator) -> [H, W] ----


def paper_mask(h: int, w: int, g: torch.Generator) -> torch.Tensor:
    """The study's hole: an H/2 x W/2 box (1/4 of the area) whose centre is jittered by up to 1/8 of its
    side around the image centre, always fully inside the image."""
    height, width = h // 2, w // 2
    jy, jx = height // 8, width // 8
    top = (h - height) // 2 + _randint(g, -jy, jy)
    left = (w - width) // 2 + _randint(g, -jx, jx)
    top, left = min(max(top, 0), h - height), min(max(left, 0), w - width)
    return _box(h, w, top, left, height, width)


def center_mask(h: int, w: int, g: torch.Generator | None = None) -> torch.Tensor:
    """Palette's fixed centre box: H/2 x W/2 at (H/4, W/4)."""
    return _box(h, w, h // 4, w // 4, h // 2, w // 2)


def bbox_mask(h: int, w: int, g: torch.Generator) -> torch.Tensor:
    """Palette's random_bbox: up to H/2 x W/2, shrunk by up to 40/256 of the side, 20/256 margin."""
    max_h, max_w = h // 2, w // 2
    delta_h, delta_w = round(h * 40 / 256), round(w * 40 / 256)
    margin_h, margin_w = round(h * 20 / 256), round(w * 20 / 256)
    height = max(1, max_h - _randint(g, 0, delta_h))
    width = max(1, max_w - _randint(g, 0, delta_w))
    top = _randint(g, margin_h, max(margin_h, h - margin_h - height))
    left = _randint(g, margin_w, max(margin_w, w - margin_w - width))
    return _box(h, w, top, left, height, width)


def free_form_mask(h: int, w: int, g: torch.Generator) -> torch.Tensor:
    """DeepFill v2 / Palette brush strokes: 1-4 thick zig-zag polylines with round joints."""
    scale = math.sqrt(h * w) / 256
    average_radius = math.sqrt(h * h + w * w) / 8
    mean_angle, angle_range = 2 * math.pi / 5, 2 * math.pi / 15
    canvas = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    for _ in range(_randint(g, 1, 4)):  # at least one stroke: an empty hole teaches nothing
        angle_min = mean_angle - _uniform(g, 0, angle_range)
        angle_max = mean_angle + _uniform(g, 0, angle_range)
        vertices = [(_uniform(g, 0, w), _uniform(g, 0, h))]
        for i in range(_randint(g, 4, 11)):
            angle = _uniform(g, angle_min, angle_max)
            angle = 2 * math.pi - angle if i % 2 == 0 else angle
            r = average_radius + average_radius / 2 * torch.randn((), generator=g, device=g.device).item()
            r = min(max(r, 0.0), 2 * average_radius)
            x = min(max(vertices[-1][0] + r * math.cos(angle), 0), w)
            y = min(max(vertices[-1][1] + r * math.sin(angle), 0), h)
            vertices.append((x, y))
        width = max(1, round(_uniform(g, 12, 40) * scale))
        draw.line(vertices, fill=1, width=width)
        for x, y in vertices:
            draw.ellipse((x - width / 2, y - width / 2, x + width / 2, y + width / 2), fill=1)
    mask = torch.from_numpy(np.asarray(canvas, dtype=np.float32).copy())
    if _uniform(g) < 0.5:
        mask = mask.flip(1)
    if _uniform(g) < 0.5:
        mask = mask.flip(0)
    return mask


def irregular_mask(h: int, w: int, g: torch.Generator) -> torch.Tensor:
    """Union of 2-6 random rotated ellipses (blobs), radii 6-20% of the image side."""
    ys = torch.arange(h, dtype=torch.float32)[:, None] + 0.5
    xs = torch.arange(w, dtype=torch.float32)[None, :] + 0.5
    side = min(h, w)
    mask = torch.zeros(h, w, dtype=torch.bool)
    for _ in range(_randint(g, 2, 6)):
        cy, cx = _uniform(g, 0.15, 0.85) * h, _uniform(g, 0.15, 0.85) * w
        a, b = _uniform(g, 0.06, 0.2) * side, _uniform(g, 0.06, 0.2) * side
        theta = _uniform(g, 0, math.pi)
        u = (xs - cx) * math.cos(theta) + (ys - cy) * math.sin(theta)
        v = -(xs - cx) * math.sin(theta) + (ys - cy) * math.cos(theta)
        mask |= (u / a) ** 2 + (v / b) ** 2 <= 1.0
    return mask.float()


# ---- uncropping masks: the hidden part is what the model must extend the image into ----


def uncrop_mask(h: int, w: int, side: str) -> torch.Tensor:
    """Palette's one-direction uncropping (half the image hidden) or a border frame hiding all but the
    H/2 x W/2 centre (the complement of the centre mask)."""
    if side == "left":
        return _box(h, w, 0, 0, h, w // 2)
    if side == "right":
        return _box(h, w, 0, w - w // 2, h, w // 2)
    if side == "top":
        return _box(h, w, 0, 0, h // 2, w)
    if side == "bottom":
        return _box(h, w, h - h // 2, 0, h // 2, w)
    if side == "border":
        return 1.0 - center_mask(h, w)
    raise ConfigError(f"task.uncrop: unknown side '{side}'; use one of {', '.join(UNCROP_SIDES)} or random")


def random_uncrop_mask(h: int, w: int, g: torch.Generator) -> torch.Tensor:
    return uncrop_mask(h, w, UNCROP_SIDES[_randint(g, 0, len(UNCROP_SIDES) - 1)])


MASKS: dict[str, Callable[[int, int, torch.Generator], torch.Tensor]] = {
    "paper": paper_mask,
    "center": center_mask,
    "free_form": free_form_mask,
    "irregular": irregular_mask,
    "bbox": bbox_mask,
    "random": random_uncrop_mask,
    **{side: (lambda h, w, g, side=side: uncrop_mask(h, w, side)) for side in UNCROP_SIDES},
}


def per_row(generators: Generators, batch: int) -> list[torch.Generator]:
    """One generator per row; a single generator is shared (draws then depend on the batch)."""
    if isinstance(generators, torch.Generator):
        return [generators] * batch
    if len(generators) != batch:
        raise ValueError(f"got {len(generators)} generators for a batch of {batch}: pass one per row")
    return list(generators)


def make_masks(kind: str, size: int | tuple[int, int], generators: Generators, batch: int | None = None):
    """Masks [B, 1, H, W] of one kind (a key of MASKS); B = len(generators) unless `batch` is given."""
    if kind not in MASKS:
        raise ConfigError(f"task.mask: unknown mask '{kind}'; use one of {', '.join(MASKS)}")
    h, w = (size, size) if isinstance(size, int) else size
    batch = (
        batch if batch is not None else (1 if isinstance(generators, torch.Generator) else len(generators))
    )
    rows = [MASKS[kind](h, w, g) for g in per_row(generators, batch)]
    return torch.stack(rows)[:, None]
