import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import model.data.faces as dlib_faces
import model.data.landscapes as endless_sky
import model.data.load as data_load
from model.config import DataConfig
from model.data import describe_source, list_source, load_split
from model.data.cache import cache_root
from model.data.images import inside_box, square_crop_box
from model.data.synthetic import render_face
from model.errors import DataError


def write_image(path: Path, seed: int, size=(40, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def make_folder(root: Path, n: int = 24, start: int = 0) -> list[str]:
    """n small real images (png/jpg/JPEG/webp, nested), plus a corrupt .jpg and a text file."""
    exts = [".png", ".jpg", ".JPEG", ".webp"]
    names = []
    for i in range(start, start + n):
        rel = f"{'sub/' if i % 3 else ''}{'deeper/' if i % 5 == 0 else ''}img{i:03d}{exts[i % 4]}"
        write_image(root / rel, i, size=(40 + i % 7, 30 + i % 11))
        names.append(rel)
    (root / "sub" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" * 10)
    (root / "notes.txt").write_text("not an image")
    return names


def cfg_for(root: Path, tmp_path: Path, **kw) -> DataConfig:
    settings = dict(source="folder", image_size=16, test_fraction=0.25, cache_dir=str(tmp_path / "cache"))
    return DataConfig(path=str(root), **{**settings, **kw})


def test_folder_counts_shapes_skips_and_partition(tmp_path):
    names = make_folder(tmp_path / "imgs")
    cfg = cfg_for(tmp_path / "imgs", tmp_path)
    train, test = load_split(cfg, "train"), load_split(cfg, "test")
    for s in (train, test):
        assert s.images.dtype == np.uint8 and s.images.shape[1:] == (16, 16, 3)
        assert len(s.images) == len(s.names) == s.stats["images"] and s.source == "folder"
        assert s.stats["files"] == 25  # 24 images + the corrupt one; notes.txt is not an image file
    assert len(test) > 0 and len(train) > len(test)
    assert set(train.names).isdisjoint(test.names) and set(train.names) | set(test.names) == set(names)
    assert train.stats["skipped"] + test.stats["skipped"] == 1
    assert describe_source(cfg) == {
        "source": "folder",
        "root": str((tmp_path / "imgs").resolve()),
        "image_size": 16,
        "files": 25,
        "skipped": 1,
        "train": len(train),
        "test": len(test),
    }


def test_split_is_stable_when_files_are_added(tmp_path):
    root = tmp_path / "imgs"
    make_folder(root)
    cfg = cfg_for(root, tmp_path)
    before = {name: split for split in ("train", "test") for name in load_split(cfg, split).names}
    make_folder(root, n=30, start=100)
    after = {name: split for split in ("train", "test") for name in load_split(cfg, split).names}
    assert len(after) == len(before) + 30
    assert all(after[name] == split for name, split in before.items())


def test_cache_hit_does_not_decode_and_a_changed_folder_rebuilds(tmp_path, monkeypatch):
    root = tmp_path / "imgs"
    make_folder(root)
    calls = []
    real_open = data_load.open_rgb
    monkeypatch.setattr(data_load, "open_rgb", lambda path: calls.append(path) or real_open(path))
    cfg = cfg_for(root, tmp_path)
    progress = []
    first = load_split(cfg, "train", progress=lambda done, total: progress.append((done, total)))
    decoded = len(calls)
    assert decoded > 0 and progress[-1][0] == progress[-1][1] and not first.stats["cache_hit"]
    second = load_split(cfg, "train")
    assert len(calls) == decoded and second.stats["cache_hit"]
    assert np.array_equal(first.images, second.images) and first.names == second.names
    assert not list((tmp_path / "cache").rglob("*.tmp"))  # atomic writes leave no temporaries
    Path(second.stats["cache"]).write_bytes(b"truncated")  # a damaged cache is rebuilt, not fatal
    assert np.array_equal(load_split(cfg, "train").images, first.images) and len(calls) == 2 * decoded
    write_image(root / first.names[0], seed=999, size=(50, 50))  # same name, new content
    third = load_split(cfg, "train")
    assert len(calls) > decoded and not np.array_equal(third.images[0], first.images[0])


def test_max_images_takes_the_first_in_hash_order(tmp_path):
    make_folder(tmp_path / "imgs")
    full = load_split(cfg_for(tmp_path / "imgs", tmp_path), "train")
    capped = load_split(cfg_for(tmp_path / "imgs", tmp_path, max_images=5), "train")
    assert capped.names == full.names[:5] and np.array_equal(capped.images, full.images[:5])


def test_empty_missing_and_unsplittable_folders(tmp_path):
    with pytest.raises(DataError, match=r"data\.path.*does not exist"):
        load_split(cfg_for(tmp_path / "nowhere", tmp_path), "train")
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(DataError, match=r"data\.path: no images .*empty"):
        load_split(cfg_for(tmp_path / "empty", tmp_path), "train")
    write_image(tmp_path / "one" / "a.png", 0)
    cfg = cfg_for(tmp_path / "one", tmp_path)
    errors = []
    for split in ("train", "test"):
        try:
            load_split(cfg, split)
        except DataError as e:
            errors.append(str(e))
    assert (
        len(errors) == 1
        and "none of its 1 images hashed into" in errors[0]
        and "data.test_fraction" in errors[0]
    )
    (tmp_path / "bad").mkdir()
    for i in range(6):
        (tmp_path / "bad" / f"x{i}.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match="could be read"):
        load_split(cfg_for(tmp_path / "bad", tmp_path, test_fraction=0.5), "train")


def test_places2_keeps_whole_category_folders(tmp_path):
    root = tmp_path / "places"
    for i, rel in enumerate(
        [
            "data_256/f/forest/broadleaf/1.jpg",
            "data_256/f/forest/needleleaf/2.jpg",
            "train/forest/3.jpg",
            "data_256/m/mountain/4.jpg",
            "data_256/m/mountain_snowy/5.jpg",
            "data_256/f/forest_path/6.jpg",
            "data_256/r/rainforest/7.jpg",
            "data_256/b/beach/8.jpg",
        ]
    ):
        write_image(root / rel, i)

    def names(categories):
        cfg = cfg_for(root, tmp_path, source="places2", categories=categories)
        return sorted(item.name for item in list_source(cfg).items)

    assert names(["forest", "mountain"]) == [
        "data_256/f/forest/broadleaf/1.jpg",
        "data_256/f/forest/needleleaf/2.jpg",
        "data_256/m/mountain/4.jpg",
        "train/forest/3.jpg",
    ]
    assert names(["forest/broadleaf", "mountain_snowy"]) == [
        "data_256/f/forest/broadleaf/1.jpg",
        "data_256/m/mountain_snowy/5.jpg",
    ]
    with pytest.raises(DataError, match="data.categories"):
        names(["canyon"])


def test_synthetic_sources_are_deterministic_and_split(tmp_path):
    for source in ("synthetic-faces", "synthetic-landscapes"):
        cfg = DataConfig(source=source, synthetic_count=12, image_size=16, cache_dir=str(tmp_path / "a"))
        again = cfg.model_copy(update={"cache_dir": str(tmp_path / "b")})
        a, b = load_split(cfg, "train"), load_split(again, "train")
        assert np.array_equal(a.images, b.images) and a.names == b.names
        assert len(a) + len(load_split(cfg, "test")) == 12 and len(load_split(cfg, "test")) >= 1
        assert len({img.tobytes() for img in a.images}) == len(a)  # all different pictures
        assert a.names[0].startswith("synthetic-") and a.images.std() > 20
    assert np.array_equal(render_face(7, 16), render_face(7, 16))


def test_crop_boxes():
    assert [square_crop_box(720, 360, i, 3) for i in range(3)] == [
        (0, 0, 360, 360),
        (180, 0, 540, 360),
        (360, 0, 720, 360),
    ]
    assert square_crop_box(100, 200, 0, 1) == (0, 50, 100, 150)
    assert inside_box((-10, -10, 30, 30), 100, 80) == (0, 0, 40, 40)  # moved inside
    assert inside_box((50, 50, 250, 150), 100, 80) == (20, 0, 100, 80)  # shrunk to the image


def test_landscapes_and_faces_from_a_folder(tmp_path):
    land = tmp_path / "land"
    for i, name in enumerate(["mountain1.jpg", "sea2.jpg", "fog3.jpg", "city0.jpg", "nasa1.jpg"]):
        write_image(land / name, i, size=(72, 36))
    cfg = cfg_for(land, tmp_path, source="landscapes", crops_per_image=2, test_fraction=0.3)
    train, test = load_split(cfg, "train"), load_split(cfg, "test")
    photos = [{n.split("#")[0] for n in s.names} for s in (train, test)]
    assert len(train) + len(test) == 6 and photos[0] | photos[1] == {"mountain1.jpg", "sea2.jpg", "fog3.jpg"}
    assert photos[0].isdisjoint(photos[1])  # every crop of a photo in one split

    faces = tmp_path / "examples"
    for p, person in enumerate(("Ann", "Bob", "Cy")):
        for i in range(4):
            write_image(faces / "johns" / person / f"{i}.jpg", 10 * p + i, size=(30, 30))
    write_image(faces / "faces" / "group.jpg", 5, size=(100, 80))
    (faces / "faces" / "training.xml").write_text(
        "<dataset><images><image file='group.jpg'>"
        "<box top='10' left='10' width='20' height='20'/><box top='40' left='60' width='30' height='30'/>"
        "<box top='0' left='0' width='5' height='5' ignore='1'/></image></images></dataset>"
    )
    cfg = cfg_for(faces, tmp_path, source="faces", test_fraction=0.3)
    train, test = load_split(cfg, "train"), load_split(cfg, "test")
    assert len(train) + len(test) == 14 and len(test) >= 1
    people = [{n.split("/")[1] for n in s.names if n.startswith("johns/")} for s in (train, test)]
    assert people[0].isdisjoint(people[1])
    with pytest.raises(DataError, match="johns"):
        load_split(cfg_for(land, tmp_path, source="faces"), "train")


CACHE = cache_root(None)  # the shared default cache: the .debs are fetched once, not on every run


def test_builtin_source_without_apt_get_says_how_to_use_a_folder(tmp_path, monkeypatch):
    monkeypatch.setattr("model.data.debian.shutil.which", lambda name: None)
    monkeypatch.setattr(dlib_faces, "INNER", "no/such/folder")  # as if libdlib19.1 were not installed
    cfg = DataConfig(source="faces", cache_dir=str(tmp_path / "cache"))
    with pytest.raises(DataError, match=r"no apt-get.*data\.path: /folder/with/the/images"):
        load_split(cfg, "train")


def builtin_available(package: str, inner: str) -> bool:
    """Installed, already fetched into the cache, or fetchable with apt-get."""
    fetched = CACHE / "debian" / package / inner
    return (Path("/") / inner).is_dir() or fetched.is_dir() or shutil.which("apt-get") is not None


@pytest.mark.skipif(
    not (
        builtin_available(dlib_faces.PACKAGE, dlib_faces.INNER)
        and builtin_available(endless_sky.PACKAGE, endless_sky.INNER)
    ),
    reason="no apt-get to fetch Debian packages libdlib19.1 / endless-sky-data, and they are not installed",
)
def test_builtin_faces_and_landscapes():
    faces = describe_source(DataConfig(source="faces", image_size=32, cache_dir=None))
    assert 90 <= faces["train"] + faces["test"] <= 100 and faces["test"] >= 5 and faces["skipped"] == 0
    cfg = DataConfig(source="landscapes", image_size=32, cache_dir=None)
    train, test = load_split(cfg, "train"), load_split(cfg, "test")
    photos = {n.split("#")[0] for n in train.names + test.names}
    assert len(photos) >= 200 and len(train) + len(test) == len(photos) * cfg.crops_per_image
    assert len(test) >= 20 and not any(p.startswith(("city", "space", "nasa")) for p in photos)
