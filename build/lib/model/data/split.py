"""Deterministic train/test split by a stable hash of each item's group, and a stable shuffled order.

User folders: a group's split depends only on its own name (sha1 below test_fraction), never on the other
files, so adding files to a folder leaves every existing file in its split. Built-in sets (fixed lists,
often under 300 images, where a threshold can leave the test split empty by bad luck) take the exact
share instead: groups in hash order fill the test split up to round(test_fraction * items), skipping
groups too big to fit (at least one group in each split).
"""

from __future__ import annotations

import hashlib
from collections import Counter

from model.data.items import Item
from model.data.names import name_bytes

SPLITS = ("train", "test")


def unit_hash(text: str) -> float:
    """A stable number in [0, 1) for a string (same on every machine and Python version).

    Hashed as the name's bytes on disk (names.name_bytes): UTF-8 for UTF-8 names, so their split never
    changed, and the raw bytes for a name that is not UTF-8 (e.g. Latin-1 `caf\\xe9.png`)."""
    return int.from_bytes(hashlib.sha1(name_bytes(text)).digest()[:8], "big") / 2**64


def split_items(items: list[Item], test_fraction: float, exact: bool = False) -> dict[str, list[Item]]:
    """{"train": [...], "test": [...]}: the items whose group hashes below test_fraction are test items
    (exact=True: groups in hash order up to the exact share, leaving both splits non-empty)."""
    sizes = Counter(item.group for item in items)
    score = {g: unit_hash("split/" + g) for g in sizes}
    if not exact:
        test = {g for g, s in score.items() if s < test_fraction}
    else:
        ranked = sorted(score, key=score.get)
        target, test, taken = round(test_fraction * len(items)), set(), 0
        for g in ranked[:-1]:  # groups that still fit, in hash order; the last one stays for training
            if taken + sizes[g] <= target:
                test.add(g)
                taken += sizes[g]
        if not test and ranked:
            test = {ranked[0]}
    return {
        "train": [item for item in items if item.group not in test],
        "test": [item for item in items if item.group in test],
    }


def hash_order(items: list[Item]) -> list[Item]:
    """A shuffled but stable order (by hash of the name); max_images takes the first ones."""
    return sorted(items, key=lambda item: (unit_hash("order/" + item.name), item.name))
