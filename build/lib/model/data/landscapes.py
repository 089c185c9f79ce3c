"""Landscape photos from Debian's `endless-sky-data` (720x360 JPEGs of planets' landing views).

Of its 273 photos we keep the 219 natural scenes (badlands, beach, canyon, desert, dune, fields, fog,
forest, hills, lava, mountain, sea, sky, snow, valley, water and the photographers' series bwerner,
dmottl, myrabella). Dropped after looking at every photo: city*, station*, space*, nasa* (launch pads,
Jupiter), loc* and industrial* (machinery), earthrise, mfield0-4 (city skylines), beach0 (a pier),
bwerner0 (a tower). Each photo gives `data.crops_per_image` square crops evenly spaced left to right;
all crops of a photo share its split.
"""

from __future__ import annotations

import re
from pathlib import Path

from model.data.debian import package_folder
from model.data.folder import image_files, resolve_folder
from model.data.images import IMAGE_KINDS
from model.data.items import Item, Listing
from model.data.names import shown
from model.errors import DataError

PACKAGE = "endless-sky-data"
INNER = "usr/share/games/endless-sky/images/land"
NOT_NATURAL = re.compile(
    r"^((city|station|space|nasa|loc|industrial)\d|earthrise|mfield[0-4]$|beach0$|bwerner0$)"
)


def is_natural(path: Path) -> bool:
    return not NOT_NATURAL.match(path.stem.lower())


def landscapes_folder(path: str | None, cache_dir: Path) -> Path:
    """data.path (the photos, or an unpacked package root), else the installed or fetched package."""
    if not path:
        return package_folder(PACKAGE, INNER, cache_dir, source="landscapes")
    root = resolve_folder(path)
    return root / INNER if (root / INNER).is_dir() else root


def list_landscapes(path: str | None, cache_dir: Path, crops: int) -> Listing:
    root = landscapes_folder(path, cache_dir)
    files = [p for p in image_files(root) if is_natural(p)]
    if not files:
        raise DataError(
            f"data.path: no landscape photos ({IMAGE_KINDS}) in '{shown(root)}'; point it at a folder of photos"
        )
    items = [
        Item(name=f"{rel}#crop{i}", group=rel, file=p, crop=(i, crops))
        for p in files
        for rel in [p.relative_to(root).as_posix()]
        for i in range(crops)
    ]
    return Listing(root=str(root), items=items, files=files, key=f"crops={crops}", exact_split=True)
