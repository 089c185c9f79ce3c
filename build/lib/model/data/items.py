"""The records passed between the data sources, the split, the decoder and the cache."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Item:
    """One image a source yields: a file (maybe a crop of it) or a procedural picture."""

    name: str  # unique and stable: shown in reports, hashed for the order within a split
    group: str  # hashed for the split: items of one group (a person, a photo) always share a split
    file: Path | None = None  # decoded file; None for procedural items
    box: tuple[float, float, float, float] | None = None  # crop (left, top, right, bottom), moved inside
    crop: tuple[int, int] | None = (
        None  # (i, k): the i-th of k square crops evenly spaced along the long side
    )
    render: Callable[[int], np.ndarray] | None = None  # procedural items: size -> uint8 [size, size, 3]


@dataclass
class Listing:
    """What a source found, before anything is decoded."""

    root: str  # resolved folder (or "procedural:..."): named in errors, part of the cache key
    items: list[Item]
    files: list[Path] = field(default_factory=list)  # every file read (images, box lists): the fingerprint
    key: str = ""  # source settings that change the items (categories, crops, count): part of the cache key
    # Built-in sets (fixed file lists): the test split takes exactly test_fraction of the items (split.py).
    exact_split: bool = False


@dataclass
class ImageSet:
    """One split of one source, decoded: uint8 [N, H, W, 3] in a stable, shuffled (hash) order."""

    images: np.ndarray
    names: list[str]
    source: str
    stats: dict

    def __len__(self) -> int:
        return len(self.images)
