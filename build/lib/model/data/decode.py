"""Every Pillow pixel format to uint8 RGB, scaled from its own range: the project's one image decoder.

Data sources (`images.open_rgb`), the reference statistics made from their arrays, `bench evaluate` and
`bench fid` all read files through `read_rgb`. Pillow's `convert("RGB")` clips 16-bit, 32-bit and float
pixels to 0..255 (a 16-bit gradient 0..65535 becomes an image of 0s and 255s), so those modes are scaled
here first. The rules, by Pillow mode:

- 8-bit modes (1, L, LA, La, P, PA, RGB, RGBA, RGBa, RGBX, CMYK, YCbCr, LAB, HSV): Pillow's own
  `convert("RGB")`, exact for them, and what pytorch-fid does (so `bench fid` keeps its numbers). Alpha is
  dropped, not composited (as pytorch-fid and torchvision's loaders do); a premultiplied mode (La, RGBa) is
  un-premultiplied first.
- I;16, I;16B, I;16L, I;16N (16-bit unsigned, any byte order): the mode's nominal range, v / 257 rounded, so
  0..65535 becomes 0..255 and a dark 16-bit image stays dark.
- I (32-bit signed; Pillow's mode for 16-bit PGM/PPM and 32-bit TIFFs): values within 0..65535 are taken
  as 16-bit data (v / 257), the usual source of this mode. Values outside it (negative, or above 65535)
  have no nominal range a reader would assume (2^32 levels would make any real image black), so the image's
  own min..max is stretched to 0..255.
- F (32-bit float): within [0, 1], the float-image convention (torchvision, scikit-image), v * 255
  rounded; otherwise the image's own min..max (depth maps, raw sensor values). A
  constant image outside [0, 1] becomes black. NaN or infinite pixels are refused: there is no right colour.

Grey modes give R = G = B. Anything else Pillow might hold is refused with the reason.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
from PIL import Image, ImageOps

from model.data.names import shown
from model.errors import DataError

SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")
PREMULTIPLIED = {"La": "LA", "RGBa": "RGBA"}
SIXTEEN_BIT_MAX = 65535


def _stretch(values: np.ndarray) -> np.ndarray:
    """The image's own min..max -> 0..255 (float); a constant image -> 0."""
    lo, hi = float(values.min()), float(values.max())
    return (values - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(values)


def _grey_levels(im: Image.Image) -> np.ndarray | None:
    """Float 0..255 grey levels [H, W] of a 16-bit, 32-bit or float image; None for the 8-bit modes."""
    if im.mode in SIXTEEN_BIT:
        return np.asarray(im).astype(np.float32) / 257.0  # numpy reads each byte order; float32 is exact here
    if im.mode == "I":
        values = np.asarray(im).astype(np.float64)
        in_16_bit = values.size and values.min() >= 0 and values.max() <= SIXTEEN_BIT_MAX
        return values / 257.0 if in_16_bit else _stretch(values)
    if im.mode == "F":
        values = np.asarray(im).astype(np.float64)
        if not np.isfinite(values).all():
            raise ValueError("float (mode F) image holds NaN or infinite pixels")
        return values * 255.0 if values.size and values.min() >= 0 and values.max() <= 1 else _stretch(values)
    return None


def to_rgb8(im: Image.Image) -> Image.Image:
    """`im` as an 8-bit RGB image, each mode scaled from its own range (see the module docstring).

    Raises ValueError naming the mode when there is no faithful conversion.
    """
    levels = _grey_levels(im)
    if levels is not None:
        grey = np.rint(np.clip(levels, 0, 255)).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")  # uint8 [H, W]: mode L
    if im.mode in PREMULTIPLIED:
        im = im.convert(PREMULTIPLIED[im.mode])
    try:
        return im.convert("RGB")
    except ValueError as err:
        raise ValueError(f"pixel format {im.mode} has no conversion to RGB ({err})") from err


def read_rgb(path: str | os.PathLike, orient: bool = True) -> Image.Image:
    """The file as 8-bit RGB (its first frame); `orient` applies its EXIF rotation (pytorch-fid does not).

    Raises DataError "<file>: <reason>" (file name escaped) when it is corrupt, unreadable, or of a pixel
    format with no faithful conversion.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL warns about odd metadata; a bad file is caught below
            with Image.open(path) as im:
                im.load()
                return to_rgb8(ImageOps.exif_transpose(im) if orient else im)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise DataError(f"{shown(path)}: unreadable image ({shown(str(err))})") from err
