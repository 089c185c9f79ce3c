"""Image folders shipped in Debian packages: the installed copy, else one fetched once into the cache.

Fetching runs `apt-get download PKG` (no root, nothing installed) and unpacks only the wanted folder from
`dpkg-deb --fsys-tarfile`; the unpacked folder is renamed into place, so an interrupted or concurrent
fetch never leaves half a folder behind. The .deb itself is not kept.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from model.errors import DataError


def _say(message: str) -> None:
    print(f"[data] {message}", file=sys.stderr, flush=True)


def _fix(source: str) -> str:
    return f"download the images yourself and set data.path: /folder/with/the/images (data.source: {source})"


def package_folder(package: str, inner: str, cache_dir: Path, source: str) -> Path:
    """Folder `inner` (e.g. usr/share/games/endless-sky/images/land) of a Debian package."""
    installed = Path("/") / inner
    if installed.is_dir():
        return installed
    root = cache_dir / "debian" / package
    if (root / inner).is_dir():
        return root / inner
    if not (shutil.which("apt-get") and shutil.which("dpkg-deb")):
        raise DataError(
            f"data.source: {installed} is not installed and there is no apt-get to fetch it; {_fix(source)}"
        )
    _say(f"fetching Debian package {package} (once) into {root} ...")
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root.parent, prefix=f".{package}-") as tmp:
        deb = _download(package, Path(tmp), source)
        _extract(deb, inner, Path(tmp) / "root")
        try:
            os.replace(Path(tmp) / "root", root)
        except OSError:
            if not (root / inner).is_dir():  # not a concurrent fetch that won the race
                raise
    if not (root / inner).is_dir():
        raise DataError(f"data.source: package {package} has no folder /{inner}; {_fix(source)}")
    _say(f"unpacked {sum(p.is_file() for p in (root / inner).rglob('*'))} files into {root / inner}")
    return root / inner


def _download(package: str, folder: Path, source: str) -> Path:
    run = subprocess.run(["apt-get", "download", package], cwd=folder, capture_output=True, text=True)
    debs = list(folder.glob("*.deb"))
    if run.returncode != 0 or not debs:
        why = (run.stderr or run.stdout).strip().splitlines()[-1:] or ["no .deb written"]
        raise DataError(f"data.source: 'apt-get download {package}' failed ({why[0]}); {_fix(source)}")
    return debs[0]


def _extract(deb: Path, inner: str, dest: Path) -> None:
    """Write the regular files below `inner` from the package's data archive into dest/inner."""
    prefix = inner.strip("/") + "/"
    with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE) as proc:
        with tarfile.open(fileobj=proc.stdout, mode="r|*") as tar:
            for member in tar:
                name = member.name.removeprefix("./")
                if not (member.isfile() and name.startswith(prefix)) or ".." in Path(name).parts:
                    continue
                target = dest / name
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
    if proc.returncode != 0:
        raise DataError(f"data.source: 'dpkg-deb --fsys-tarfile {deb.name}' failed; check the download")
