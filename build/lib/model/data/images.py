"""Which files are images, decoding them (decode.py), and cutting them to square uint8 arrays (antialiased
resize, centre crop)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from model.data.decode import read_rgb
from model.errors import DataError

# The one list of image files for the whole project (data sources and `bench fid`), matched on the lower-cased
# suffix so IMG_0001.JPG counts once: pytorch-fid's extensions, which include every one the sources took.
IMAGE_EXTENSIONS = (".bmp", ".jpeg", ".jpg", ".pgm", ".png", ".ppm", ".tif", ".tiff", ".webp")
IMAGE_KINDS = "/".join(IMAGE_EXTENSIONS)  # for messages
RESAMPLE = Image.Resampling.LANCZOS  # antialiased when shrinking


def is_image_file(path: Path) -> bool:
    """A file (not a folder) whose suffix, in any case, is in IMAGE_EXTENSIONS."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file()


def open_rgb(path: Path) -> Image.Image | None:
    """The file as 8-bit RGB with its EXIF rotation applied (decode.read_rgb: every pixel format scaled from
    its own range), or None when it is corrupt, unreadable or of a format with no faithful conversion."""
    try:
        return read_rgb(path, orient=True)
    except DataError:
        return None


def square_crop_box(width: int, height: int, i: int, k: int) -> tuple[float, float, float, float]:
    """The i-th of k squares (side = the short side) evenly spaced along the long side (centred if k=1)."""
    side = min(width, height)
    slack = max(width, height) - side
    offset = slack / 2 if k == 1 else slack * i / (k - 1)
    return (offset, 0, offset + side, side) if width >= height else (0, offset, side, offset + side)


def inside_box(box: tuple[float, float, float, float], width: int, height: int):
    """`box` made square, no larger than the image, and shifted to lie inside it."""
    left, top, right, bottom = box
    side = min(max(right - left, bottom - top), width, height)
    cx, cy = (left + right) / 2, (top + bottom) / 2
    left = min(max(cx - side / 2, 0), width - side)
    top = min(max(cy - side / 2, 0), height - side)
    return (left, top, left + side, top + side)


def centre_square(width: int, height: int) -> tuple[float, float, float, float]:
    return square_crop_box(width, height, 0, 1)


def to_array(img: Image.Image, size: int, box: tuple[float, float, float, float] | None = None) -> np.ndarray:
    """Resize the square `box` (default: the centre square) to size x size -> uint8 [size, size, 3].

    Resizing the crop region directly equals "resize the shorter side to size, then centre crop", in one
    antialiased step.
    """
    box = box if box is not None else centre_square(*img.size)
    out = img.resize((size, size), resample=RESAMPLE, box=box)
    return np.asarray(out, dtype=np.uint8)
