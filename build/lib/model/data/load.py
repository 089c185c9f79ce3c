"""load_split: list a source, split it by hash, then read the uint8 cache or decode the split once.

Sources (data.source): folder, places2 (folder.py), faces (faces.py), landscapes (landscapes.py),
synthetic-faces and synthetic-landscapes (synthetic.py). Every image is cut to image_size x image_size by
an antialiased resize of its centre square (or of its crop). Corrupt or unreadable files are skipped and
counted in `stats["skipped"]`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from model.config import DataConfig
from model.data import cache
from model.data.faces import list_faces
from model.data.folder import list_folder, list_places2, resolve_folder
from model.data.images import IMAGE_KINDS, inside_box, open_rgb, square_crop_box, to_array
from model.data.items import ImageSet, Item, Listing
from model.data.landscapes import list_landscapes
from model.data.names import shown
from model.data.split import SPLITS, hash_order, split_items
from model.data.synthetic import list_synthetic
from model.errors import DataError

Progress = Callable[[int, int], None]  # progress(done, total) while decoding


def list_source(cfg: DataConfig) -> Listing:
    """What cfg's source holds (the built-in sources fetch their Debian package on first use)."""
    if cfg.source == "folder":
        listing = list_folder(resolve_folder(cfg.path))
        if not listing.items:
            raise DataError(
                f"data.path: no images ({IMAGE_KINDS}) in '{shown(listing.root)}'; point it at a folder of images"
            )
        return listing
    if cfg.source == "places2":
        return list_places2(resolve_folder(cfg.path), cfg.categories)
    if cfg.source == "faces":
        return list_faces(cfg.path, cache.cache_root(cfg.cache_dir))
    if cfg.source == "landscapes":
        return list_landscapes(cfg.path, cache.cache_root(cfg.cache_dir), cfg.crops_per_image)
    return list_synthetic(cfg.source, cfg.synthetic_count)


def _where(cfg: DataConfig, listing: Listing) -> str:
    """The key to name in an error about this source."""
    if cfg.source.startswith("synthetic"):
        return f"data.synthetic_count={cfg.synthetic_count}"
    return f"data.path: '{shown(listing.root)}'"


def _decode(items: list[Item], size: int, on_item: Callable[[], None]) -> tuple[dict[str, np.ndarray], set]:
    """Arrays by item name, and the files that would not decode; each file is decoded once."""
    by_file: dict = {}
    for item in items:
        by_file.setdefault(item.file, []).append(item)
    arrays, bad = {}, set()
    for file, group in by_file.items():
        img = open_rgb(file) if file is not None else None
        if file is not None and img is None:
            bad.add(file)
        for item in group:
            if item.render is not None:
                arrays[item.name] = item.render(size)
            elif img is not None:
                box = None
                if item.box is not None:
                    box = inside_box(item.box, *img.size)
                elif item.crop is not None:
                    box = square_crop_box(*img.size, *item.crop)
                arrays[item.name] = to_array(img, size, box)
            on_item()
    return arrays, bad


def _decode_first(ordered: list[Item], size: int, cap: int | None, progress: Progress | None):
    """The first `cap` decodable items in order (all if cap is None): (items, arrays, bad files)."""
    total = len(ordered) if cap is None else min(cap, len(ordered))
    done, arrays, bad, pos = 0, {}, set(), 0

    def on_item():
        nonlocal done
        done += 1
        if progress is not None:
            progress(min(done, total), total)

    while pos < len(ordered) and len(arrays) < total:  # refill the places of files that failed
        batch = ordered[pos : pos + total - len(arrays)]
        pos += len(batch)
        got, failed = _decode(batch, size, on_item)
        arrays.update(got)
        bad |= failed
    kept = [item for item in ordered if item.name in arrays][:total]
    return kept, arrays, bad


def load_split(cfg: DataConfig, split: str, progress: Progress | None = None) -> ImageSet:
    """One split of cfg's source as uint8 [N, S, S, 3], decoded once and then read from the cache."""
    if split not in SPLITS:
        raise DataError(f"split '{split}' is not one of {', '.join(SPLITS)}")
    listing = list_source(cfg)
    splits = split_items(listing.items, cfg.test_fraction, listing.exact_split)
    ordered = hash_order(splits[split])
    key = {
        "source": cfg.source,
        "root": listing.root,
        "size": cfg.image_size,
        "split": split,
        "test_fraction": cfg.test_fraction,
        "max_images": cfg.max_images,
        "settings": listing.key,
        "fingerprint": cache.fingerprint(listing.files),
        "items": cache.names_digest([item.name for item in ordered]),  # the split's members, in order
    }
    path = cache.cache_path(cache.cache_root(cfg.cache_dir), f"{cfg.source}-{split}-{cfg.image_size}px", key)
    hit = cache.load(path)
    if hit is not None:
        images, names, stats = hit
        return ImageSet(images=images, names=names, source=cfg.source, stats={**stats, "cache_hit": True})

    where = _where(cfg, listing)
    if not ordered:
        raise DataError(
            f"{where}: none of its {len(listing.items)} images hashed into the {split} split "
            f"(data.test_fraction={cfg.test_fraction}); add images or change data.test_fraction"
        )
    kept, arrays, bad = _decode_first(ordered, cfg.image_size, cfg.max_images, progress)
    if not kept:
        raise DataError(
            f"{where}: none of the {len(ordered)} {split} images could be read (corrupt?); replace them"
        )
    images = np.stack([arrays[item.name] for item in kept])
    files = {item.file for item in listing.items if item.file is not None}
    stats = {
        "source": cfg.source,
        "root": shown(listing.root),  # shown: stats are printed (bench data) and written as JSON
        "split": split,
        "files": len(files) or len(listing.items),
        "candidates": {name: len(items) for name, items in splits.items()},  # items hashed into each split
        "skipped": len(bad),  # corrupt / unreadable files met while decoding this split
        "skipped_files": sorted(shown(f) for f in bad)[:20],
        "images": len(kept),
        "cache": str(path),
    }
    cache.save(path, images, [item.name for item in kept], stats)
    return ImageSet(
        images=images,
        names=[item.name for item in kept],
        source=cfg.source,
        stats={**stats, "cache_hit": False},
    )


def describe_source(cfg: DataConfig, progress: Progress | None = None) -> dict:
    """How many images each split yields (loads, so decodes once and then reads the cache)."""
    sets = {split: load_split(cfg, split, progress) for split in SPLITS}
    return {
        "source": cfg.source,
        "root": sets["train"].stats["root"],
        "image_size": cfg.image_size,
        "files": sets["train"].stats["files"],
        "skipped": sum(s.stats["skipped"] for s in sets.values()),
        **{split: len(s) for split, s in sets.items()},
    }
