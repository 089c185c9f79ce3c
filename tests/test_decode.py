"""Images as users have them (issue 16): every Pillow pixel format decoded from its own range, every
extension found in any case, and names that are not UTF-8. Each mode is written by Pillow with a known
gradient and read back through the project's one decoder (model/data/decode.py)."""

from __future__ import annotations

import colorsys
import hashlib
import os

import numpy as np
import pytest
from _reliability import run_subprocess
from PIL import Image

from model.config import DataConfig
from model.data import load_split
from model.data.decode import read_rgb, to_rgb8
from model.data.folder import image_files
from model.data.images import open_rgb
from model.data.names import shown
from model.data.split import unit_hash
from model.errors import DataError
from model.metrics import fid

W, H = 256, 3
K = np.arange(W)  # the expected 8-bit level of column k
ROW = np.broadcast_to(K, (H, W))


def grey(levels) -> np.ndarray:
    """Expected [H, W, 3] uint8 with R = G = B = levels (per column)."""
    return np.broadcast_to(np.asarray(levels, dtype=np.uint8)[None, :, None], (H, W, 3))


def colour(r, g, b) -> np.ndarray:
    rgb = np.stack([np.broadcast_to(np.asarray(c, dtype=float), (W,)) for c in (r, g, b)], -1)
    return np.broadcast_to(rgb.astype(np.uint8)[None], (H, W, 3))


def channels(*planes) -> np.ndarray:
    """[H, W, C] uint8 from per-column planes."""
    return np.stack([np.broadcast_to(np.asarray(p), (H, W)) for p in planes], -1).astype(np.uint8)


def raw(mode: str, array: np.ndarray) -> Image.Image:
    return Image.frombytes(mode, (W, H), np.ascontiguousarray(array).tobytes())


def with_palette(mode: str) -> Image.Image:
    im = raw("P", ROW.astype(np.uint8))  # index k -> palette entry k
    im.putpalette([v for i in range(256) for v in (i, 255 - i, i // 2)])
    if mode == "PA":
        im = im.convert("PA")
        im.putalpha(Image.fromarray((255 - ROW).astype(np.uint8), "L"))
    return im


def l_star_to_srgb(k: np.ndarray) -> np.ndarray:
    """CIE L* (byte k = L* 100 k / 255, a* = b* = 0) to the sRGB grey level (CIE 1976, IEC 61966-2-1)."""
    lstar = k / 255 * 100
    y = np.where(lstar > 8, ((lstar + 16) / 116) ** 3, lstar / 903.3)
    return 255 * np.where(y <= 0.0031308, 12.92 * y, 1.055 * y ** (1 / 2.4) - 0.055)


HSV_RGB = np.array([colorsys.hsv_to_rgb(k / 255, 1, 1) for k in K]) * 255
GRADIENT_16 = (ROW * 257).astype(np.uint16)  # 0..65535: expected 0..255
K_OVER_255 = (ROW / 255).astype(np.float32)

# (case, mode built, Pillow mode read back, file suffix or None for in-memory only, image, expected, tolerance)
CASES = [
    ("1", "1", ".png", Image.fromarray(ROW.astype(np.uint8)).convert("1", dither=Image.Dither.NONE),
     grey(np.where(K >= 128, 255, 0)), 0),
    ("L", "L", ".png", Image.fromarray(ROW.astype(np.uint8)), grey(K), 0),
    ("LA", "LA", ".png", raw("LA", channels(K, 255 - K)), grey(K), 0),  # alpha dropped, as pytorch-fid
    ("P", "P", ".png", with_palette("P"), colour(K, 255 - K, K // 2), 0),
    ("PA", "PA", ".tif", with_palette("PA"), colour(K, 255 - K, K // 2), 0),
    ("RGB", "RGB", ".png", raw("RGB", channels(K, 255 - K, K // 2)), colour(K, 255 - K, K // 2), 0),
    ("RGBA", "RGBA", ".png", raw("RGBA", channels(K, 255 - K, K // 2, K)), colour(K, 255 - K, K // 2), 0),
    ("CMYK", "CMYK", ".tif", raw("CMYK", channels(K, 255 - K, 0, 64)),  # R = (255 - C)(255 - K) / 255
     colour((255 - K) * 191 / 255 + 0.5, K * 191 / 255 + 0.5, 191), 1),
    ("YCbCr", "YCbCr", ".tif", raw("YCbCr", channels(K, 128, 128)), grey(K), 1),
    ("LAB", "LAB", ".tif", raw("LAB", channels(K, 0, 0)), grey(np.rint(l_star_to_srgb(K))), 2),
    ("HSV", "HSV", None, raw("HSV", channels(K, 255, 255)), colour(*np.rint(HSV_RGB).T), 1),
    ("I;16", "I;16", ".png", Image.fromarray(GRADIENT_16), grey(K), 0),
    ("I;16B", "I;16B", ".tif", raw("I;16B", GRADIENT_16.astype(">u2")), grey(K), 0),
    ("I;16L", "I;16", ".tif", raw("I;16L", GRADIENT_16.astype("<u2")), grey(K), 0),
    ("I;16N", "I;16N", None, raw("I;16N", GRADIENT_16), grey(K), 0),
    ("I;16 as 16-bit PGM", "I", ".pgm", Image.fromarray(GRADIENT_16), grey(K), 0),
    ("I within 0..65535", "I", ".tif", Image.fromarray((ROW * 257).astype(np.int32)), grey(K), 0),
    ("I outside 0..65535: own range", "I", ".tif", Image.fromarray((ROW * 40 - 1000).astype(np.int32)),
     grey(K), 0),
    ("F within [0, 1]", "F", ".tif", Image.fromarray(K_OVER_255), grey(K), 0),
    ("F as PFM", "F", ".ppm", Image.fromarray(K_OVER_255), grey(K), 0),
    ("F outside [0, 1]: own range", "F", ".tif", Image.fromarray((ROW * 5 / 255 - 1).astype(np.float32)),
     grey(K), 0),
]


@pytest.mark.parametrize("case, mode_read, suffix, image, expected, tol", CASES, ids=[c[0] for c in CASES])
def test_every_mode_reaches_uint8_rgb_from_its_own_range(case, mode_read, suffix, image, expected, tol, tmp_path):
    if suffix is None:  # no file format Pillow writes holds this mode: the decoder's in-memory entry point
        got = to_rgb8(image)
    else:
        path = tmp_path / f"gradient{suffix}"
        image.save(path)
        with Image.open(path) as check:
            assert check.mode == mode_read  # the mode the decoder really meets on disk
        got = read_rgb(path)
        assert np.array_equal(np.asarray(open_rgb(path)), np.asarray(got))  # the data sources' entry point
        assert np.array_equal(fid._read_rgb(path), np.asarray(got))  # bench fid's
    assert got.mode == "RGB" and got.size == (W, H)
    diff = np.abs(np.asarray(got).astype(int) - expected.astype(int))
    assert diff.max() <= tol, f"{case}: worst column {diff.max(axis=(0, 2)).argmax()} off by {diff.max()}"


def test_16_bit_image_keeps_its_gradient_as_training_data(tmp_path):
    """The issue's report: a 64x64 16-bit PNG gradient was two values (0 and 255) after loading."""
    root = tmp_path / "sixteen"
    root.mkdir()
    ramp = np.broadcast_to(np.linspace(0, 65535, 64).round().astype(np.uint16), (64, 64))
    for i in range(12):
        Image.fromarray(np.ascontiguousarray(ramp)).save(root / f"ramp{i:02d}.png")
    cfg = DataConfig(source="folder", path=str(root), image_size=64, test_fraction=0.3,
                     cache_dir=str(tmp_path / "cache"))
    row = load_split(cfg, "train").images[0, 32, :, 0].astype(int)
    assert np.abs(row - np.rint(np.linspace(0, 255, 64))).max() <= 1  # the 0..255 gradient, not 0 / 255


def test_unfaithful_pixels_are_refused_naming_the_file(tmp_path):
    bad = np.zeros((4, 4), np.float32)
    bad[1, 1] = np.nan
    Image.fromarray(bad).save(tmp_path / "nan.tif")
    with pytest.raises(DataError, match=r"nan\.tif: unreadable image \(.*NaN") as err:
        read_rgb(tmp_path / "nan.tif")
    assert "\n" not in str(err.value)
    assert open_rgb(tmp_path / "nan.tif") is None  # data sources skip it and count it
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match=r"broken\.png: unreadable image"):
        read_rgb(tmp_path / "broken.png")


def test_premultiplied_modes_are_unpremultiplied_then_alpha_dropped():
    la = Image.frombytes("LA", (W, H), channels(K, 255).tobytes()).convert("La")  # opaque: same levels
    assert np.array_equal(np.asarray(to_rgb8(la)), grey(K))


def test_extensions_in_any_case_each_file_once(tmp_path):
    folder = tmp_path / "shots"
    folder.mkdir()
    rgb = Image.fromarray(np.full((8, 8, 3), 90, np.uint8))
    for name in ("IMG_0001.JPG", "IMG_0002.JPG", "b.Png", "c.jpeg", "d.JPEG", "e.TIF", "f.webp"):
        rgb.save(folder / name)
    (folder / "notes.TXT").write_text("not an image")
    (folder / "dir.png").mkdir()  # a folder with an image suffix is not a file
    expected = sorted(folder / n for n in ("IMG_0001.JPG", "IMG_0002.JPG", "b.Png", "c.jpeg", "d.JPEG", "e.TIF",
                                           "f.webp"))
    assert fid.image_files(folder) == expected  # bench fid: not recursive, as pytorch-fid
    assert image_files(folder) == expected  # data sources: the same list, and recursive
    (folder / "sub").mkdir()
    rgb.save(folder / "sub" / "IMG_0003.JPG")
    assert len(image_files(folder)) == 8 and len(fid.image_files(folder)) == 7
    assert len(fid.folder_features(folder, batch_size=4)) == 7


def test_names_that_are_not_utf8_split_load_and_show_escaped(tmp_path):
    root = os.fsencode(tmp_path) + b"/caf\xe9"  # a Latin-1 folder name, with Latin-1 file names inside
    os.mkdir(root)
    for i in range(30):
        pixels = np.random.default_rng(i).integers(0, 256, (12, 12, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(os.fsdecode(root + b"/caf\xe9%02d.png" % i))
    cfg = DataConfig(source="folder", path=os.fsdecode(root), image_size=8, test_fraction=0.3,
                     cache_dir=str(tmp_path / "cache"))
    train, test = load_split(cfg, "train"), load_split(cfg, "test")
    assert len(train) + len(test) == 30 and len(test) > 0 and len(train) > 0
    name = "caf\udce9" + "00.png"  # the file system's name, as Python decodes it
    split_of_00 = "test" if name in test.names else "train"
    assert (unit_hash("split/" + name) < 0.3) == (split_of_00 == "test")
    digest = hashlib.sha1(b"split/caf\xe900.png").digest()[:8]  # hashed from the bytes on disk
    assert unit_hash("split/" + name) == int.from_bytes(digest, "big") / 2**64
    assert load_split(cfg, "test").stats["cache_hit"]  # the cache round-trips such names
    assert train.stats["root"].endswith("caf\\xe9")  # shown escaped, printable anywhere
    with pytest.raises(DataError) as err:
        load_split(DataConfig(source="folder", path=os.fsdecode(root + b"/nowhere"), image_size=8), "train")
    assert "caf\\xe9/nowhere" in str(err.value)
    str(err.value).encode("utf-8")  # no lone surrogates left in the message
    assert shown(os.fsdecode(b"caf\xe9.png")) == "caf\\xe9.png" and shown("café.png") == "café.png"
    # The report: `bench data folder` stopped with a traceback (a real process: stdout is UTF-8).
    proc = run_subprocess(["data", "folder", "--path", os.fsdecode(root), "--image-size", "8"],
                          PALETTE_BENCH_CACHE=str(tmp_path / "cache"), COLUMNS="400")  # rich: no ellipsis
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "caf\\xe9" in proc.stdout and "30" in proc.stdout


@pytest.mark.parametrize("name", ["img001.png", "sub/deeper/café.jpg", "日本/写真.JPG"])
def test_split_of_utf8_names_is_unchanged(name):
    """The hash before issue 16 was sha1 of the UTF-8 text: every existing split stays where it was."""
    before = int.from_bytes(hashlib.sha1(("split/" + name).encode("utf-8")).digest()[:8], "big") / 2**64
    assert unit_hash("split/" + name) == before

