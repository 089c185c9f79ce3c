"""Procedural stand-ins for faces and landscapes: seeded cartoons for fast tests, no files needed.

Picture i depends only on (kind, i), so `synthetic-0007` is the same picture whatever synthetic_count.
Drawn at twice the target size and shrunk with an antialiased resize, so edges look like photos' edges.
"""

from __future__ import annotations

from functools import partial

import numpy as np
from PIL import Image, ImageDraw

from model.data.items import Item, Listing

SKIN = [(255, 224, 196), (241, 194, 161), (224, 172, 132), (198, 134, 94), (141, 85, 54), (90, 56, 37)]
HAIR = [(20, 16, 14), (70, 45, 30), (120, 80, 45), (200, 160, 90), (165, 60, 30), (150, 150, 150)]
EYES = [(70, 45, 30), (60, 110, 160), (80, 120, 70), (40, 30, 25)]


def _jitter(rng: np.random.Generator, colour, amount: int = 18) -> tuple[int, int, int]:
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in colour)


def _gradient(size: int, top, bottom) -> Image.Image:
    t = np.linspace(0.0, 1.0, size)[:, None, None]
    rows = (1 - t) * np.array(top, float) + t * np.array(bottom, float)
    return Image.fromarray(np.repeat(rows, size, axis=1).astype(np.uint8))


def _finish(img: Image.Image, size: int) -> np.ndarray:
    return np.asarray(img.resize((size, size), Image.Resampling.LANCZOS), dtype=np.uint8)


def render_face(index: int, size: int) -> np.ndarray:
    rng = np.random.default_rng([1, index])
    s = 2 * size
    img = _gradient(s, rng.integers(0, 256, 3), rng.integers(0, 256, 3))
    d = ImageDraw.Draw(img)

    def p(*xy):  # coordinates given as fractions of the side
        return [v * s for v in xy]

    skin, hair = _jitter(rng, SKIN[rng.integers(len(SKIN))]), _jitter(rng, HAIR[rng.integers(len(HAIR))])
    cx, cy = 0.5 + rng.uniform(-0.05, 0.05), 0.48 + rng.uniform(-0.04, 0.04)
    fw, fh = rng.uniform(0.21, 0.27), rng.uniform(0.28, 0.34)  # half width / height of the face
    d.ellipse(p(cx - 0.38, 0.82, cx + 0.38, 1.3), fill=_jitter(rng, rng.integers(0, 256, 3), 0))  # shoulders
    d.rectangle(p(cx - fw * 0.45, cy + fh * 0.6, cx + fw * 0.45, 0.9), fill=skin)  # neck
    d.ellipse(p(cx - fw * 1.15, cy - fh * 1.2, cx + fw * 1.15, cy + fh * rng.uniform(0.2, 0.9)), fill=hair)
    d.ellipse(p(cx - fw, cy - fh, cx + fw, cy + fh), fill=skin)
    d.chord(
        p(cx - fw, cy - fh * 1.05, cx + fw, cy - fh * rng.uniform(0.1, 0.5)), 180, 360, fill=hair
    )  # fringe
    eye_y, eye_dx, eye_r = cy - fh * 0.1, fw * rng.uniform(0.38, 0.48), fw * 0.16
    iris = _jitter(rng, EYES[rng.integers(len(EYES))])
    for side in (-1, 1):
        ex = cx + side * eye_dx
        d.ellipse(p(ex - eye_r * 1.4, eye_y - eye_r, ex + eye_r * 1.4, eye_y + eye_r), fill=(245, 245, 240))
        d.ellipse(p(ex - eye_r * 0.7, eye_y - eye_r * 0.7, ex + eye_r * 0.7, eye_y + eye_r * 0.7), fill=iris)
        d.line(
            p(ex - eye_r * 1.5, eye_y - eye_r * 2, ex + eye_r * 1.5, eye_y - eye_r * 2.2),
            fill=hair,
            width=max(1, s // 60),
        )
    shade = tuple(int(c * 0.8) for c in skin)
    d.polygon(
        p(cx, eye_y + fh * 0.1, cx - fw * 0.15, cy + fh * 0.35, cx + fw * 0.15, cy + fh * 0.35), fill=shade
    )
    mouth_y, mouth_w = cy + fh * 0.55, fw * rng.uniform(0.35, 0.6)
    lips = _jitter(rng, (170, 60, 70), 30)
    d.chord(p(cx - mouth_w, mouth_y - fh * 0.15, cx + mouth_w, mouth_y + fh * 0.15), 0, 180, fill=lips)
    return _finish(img, size)


def _ridge(rng: np.random.Generator, base: float, roughness: float, levels: int = 5) -> list[float]:
    """Heights (fractions of the side, top = 0) of a mountain ridge by midpoint displacement."""
    heights = [base + rng.uniform(-roughness, roughness), base + rng.uniform(-roughness, roughness)]
    for _ in range(levels):
        roughness *= 0.6
        finer = heights[:1]
        for a, b in zip(heights[:-1], heights[1:], strict=True):
            finer += [(a + b) / 2 + rng.uniform(-roughness, roughness), b]
        heights = finer
    return heights


def render_landscape(index: int, size: int) -> np.ndarray:
    rng = np.random.default_rng([2, index])
    s = 2 * size
    sunset = rng.random() < 0.3
    top = (rng.integers(20, 80), rng.integers(60, 140), rng.integers(150, 255))
    horizon = (
        (rng.integers(200, 256), rng.integers(120, 190), rng.integers(60, 120))
        if sunset
        else (rng.integers(160, 230), rng.integers(190, 240), rng.integers(220, 256))
    )
    img = _gradient(s, top, horizon)
    d = ImageDraw.Draw(img)
    if rng.random() < 0.7:  # sun
        x, y, r = rng.uniform(0.1, 0.9) * s, rng.uniform(0.08, 0.4) * s, rng.uniform(0.03, 0.08) * s
        d.ellipse((x - r, y - r, x + r, y + r), fill=(255, 236, 170) if not sunset else (255, 180, 90))
    ground = rng.uniform(0.6, 0.75)
    for layer in range(rng.integers(1, 4)):  # far (pale) to near (dark) ranges
        heights = _ridge(rng, rng.uniform(0.3, 0.5) + 0.08 * layer, 0.25)
        xs = np.linspace(0, s, len(heights))
        shade = 0.55 + 0.15 * (2 - layer) + rng.uniform(-0.1, 0.1)
        colour = tuple(
            int(c * shade) for c in (rng.integers(70, 140), rng.integers(80, 130), rng.integers(90, 150))
        )
        d.polygon([(0, s)] + [(x, h * s) for x, h in zip(xs, heights, strict=True)] + [(s, s)], fill=colour)
    grass = (rng.integers(40, 110), rng.integers(100, 170), rng.integers(20, 70))
    d.rectangle((0, ground * s, s, s), fill=grass)
    if rng.random() < 0.4:  # a lake
        lx, lw = rng.uniform(0.1, 0.6) * s, rng.uniform(0.2, 0.4) * s
        d.ellipse(
            (lx, (ground + 0.05) * s, lx + lw, (ground + 0.15) * s), fill=tuple(int(c * 0.8) for c in horizon)
        )
    for _ in range(rng.integers(0, 7)):  # trees
        x, base, h = rng.uniform(0, 1) * s, rng.uniform(ground + 0.03, 0.98) * s, rng.uniform(0.06, 0.16) * s
        d.rectangle((x - h * 0.05, base - h * 0.3, x + h * 0.05, base), fill=(80, 55, 30))
        d.polygon(
            [(x, base - h), (x - h * 0.3, base - h * 0.25), (x + h * 0.3, base - h * 0.25)], fill=(25, 80, 35)
        )
    return _finish(img, size)


RENDERERS = {"synthetic-faces": render_face, "synthetic-landscapes": render_landscape}


def list_synthetic(source: str, count: int) -> Listing:
    render = RENDERERS[source]
    items = [
        Item(name=f"synthetic-{i:04d}", group=f"synthetic-{i:04d}", render=partial(render, i))
        for i in range(count)
    ]
    return Listing(root=f"procedural:{source}", items=items, key=f"count={count}", exact_split=True)
