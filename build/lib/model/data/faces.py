"""Faces from Debian's `libdlib19.1` examples: 98 faces, split by person.

- johns/<person>/*.jpg: 55 aligned 150x150 crops of 5 people; the person folder is the split group, so
  one person's crops never sit in both splits.
- faces/{training,testing}.xml: dlib imglab lists of face boxes in 9 PASCAL VOC photos (43 faces, each
  another person); each box becomes a square crop with a 25% margin on each side, moved inside the
  photo. Boxes marked ignore='1' are skipped.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from model.data.debian import package_folder
from model.data.folder import image_files, resolve_folder
from model.data.items import Item, Listing
from model.data.names import shown
from model.errors import DataError

PACKAGE = "libdlib19.1"
INNER = "usr/share/doc/libdlib19.1/examples"
BOX_LISTS = ("faces/training.xml", "faces/testing.xml")  # the *_with_face_landmarks.xml repeat these boxes
MARGIN = 0.25  # of the box side, added on each side: keeps hair and chin like the aligned crops


def faces_folder(path: str | None, cache_dir: Path) -> Path:
    """data.path (dlib's examples folder, or an unpacked package root), else the installed or fetched one."""
    if not path:
        return package_folder(PACKAGE, INNER, cache_dir, source="faces")
    root = resolve_folder(path)
    return root / INNER if (root / INNER).is_dir() else root


def margin_box(left: float, top: float, width: float, height: float) -> tuple[float, float, float, float]:
    side = max(width, height) * (1 + 2 * MARGIN)
    cx, cy = left + width / 2, top + height / 2
    return (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)


def box_items(root: Path, xml_file: Path) -> list[Item]:
    try:
        images = ET.parse(xml_file).getroot().iter("image")
    except ET.ParseError as e:
        raise DataError(f"data.path: cannot parse face boxes '{xml_file}' ({e}); restore the file") from None
    items = []
    for image in images:
        file = xml_file.parent / image.get("file", "")
        rel = file.relative_to(root).as_posix()
        for i, box in enumerate(image.iter("box")):
            if box.get("ignore") == "1":
                continue
            left, top, width, height = (float(box.get(k, 0)) for k in ("left", "top", "width", "height"))
            name = f"{rel}#box{i}"
            items.append(Item(name=name, group=name, file=file, box=margin_box(left, top, width, height)))
    return items


def list_faces(path: str | None, cache_dir: Path) -> Listing:
    root = faces_folder(path, cache_dir)
    johns = image_files(root / "johns") if (root / "johns").is_dir() else []
    items = [Item(name=p.relative_to(root).as_posix(), group=f"johns/{p.parent.name}", file=p) for p in johns]
    xml_files = [root / name for name in BOX_LISTS if (root / name).is_file()]
    for xml_file in xml_files:
        items += box_items(root, xml_file)
    if not items:
        raise DataError(
            f"data.path: '{shown(root)}' has neither johns/<person>/*.jpg nor faces/training.xml; "
            "for a plain folder of face images use data.source: folder"
        )
    files = sorted({item.file for item in items if item.file.is_file()} | set(xml_files))
    return Listing(root=str(root), items=items, files=files, exact_split=True)
