"""Folder sources: any folder of images (e.g. CelebA-HQ), and a Places2 tree filtered by category.

Places2 categories match whole directory names: `forest` keeps `.../f/forest/...` and
`train/forest/broadleaf/...` but not `forest_path/` or `rainforest/`; `mountain` does not keep
`mountain_snowy/` (list it as its own category). A category with a slash (`forest/broadleaf`) matches
that run of directories. This is Places365's own naming, so the paper's `forest` and `mountain` are
exactly those two classes.
"""

from __future__ import annotations

from pathlib import Path

from model.data.images import is_image_file
from model.data.items import Item, Listing
from model.data.names import shown
from model.errors import DataError


def resolve_folder(path: str | None, key: str = "data.path") -> Path:
    if not path:
        raise DataError(f"{key} is not set; point it at a folder of images")
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise DataError(f"{key}: folder '{shown(root)}' does not exist; point {key} at a folder of images")
    return root


def image_files(root: Path) -> list[Path]:
    """Every image file below root (images.IMAGE_EXTENSIONS, any case), sorted; hidden folders are skipped."""
    found = [p for p in root.rglob("*") if is_image_file(p)]
    return sorted(p for p in found if not any(part.startswith(".") for part in p.relative_to(root).parts))


def list_folder(root: Path, files: list[Path] | None = None) -> Listing:
    """One item per file, named and split by its path relative to root."""
    files = image_files(root) if files is None else files
    items = [Item(name=rel, group=rel, file=p) for p in files for rel in [p.relative_to(root).as_posix()]]
    return Listing(root=str(root), items=items, files=files)


def matches_category(relative: Path, category: str) -> bool:
    wanted = [part for part in category.strip("/").split("/") if part]
    dirs = relative.parts[:-1]
    return any(list(dirs[i : i + len(wanted)]) == wanted for i in range(len(dirs) - len(wanted) + 1))


def list_places2(root: Path, categories: list[str]) -> Listing:
    if not categories:
        raise DataError("data.categories is empty; list Places2 categories such as [forest, mountain]")
    files = [
        p for p in image_files(root) if any(matches_category(p.relative_to(root), c) for c in categories)
    ]
    if not files:
        raise DataError(
            f"data.path: no images under '{shown(root)}' in a folder named {' or '.join(categories)}; "
            "check data.categories (whole directory names, e.g. forest, mountain_snowy)"
        )
    listing = list_folder(root, files)
    listing.key = ",".join(sorted(categories))
    return listing
