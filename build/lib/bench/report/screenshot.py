"""A report as a reader sees it: report.md rendered to HTML (build.md_to_html, markdown-it-py) and opened in
headless Chromium (the Debian package `chromium`), for a screenshot and the list of images that did not load.

A broken image link or an unreadable table shows in the screenshot; `image_check` makes the broken links a
list a test can assert on (the page's own `naturalWidth`, after Chromium has loaded it).
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from model.errors import BenchError

from .build import md_to_html

BINARIES = ("chromium", "chromium-browser", "google-chrome")
# headless, no network beyond the files themselves, no profile left behind
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--allow-file-access-from-files"]
# set on <body> once the page has loaded: how many images it has, and the src of those that did not load
_PROBE = ("<script>window.addEventListener('load',()=>{const imgs=[...document.images];"
          "document.body.setAttribute('data-images',imgs.length);document.body.setAttribute('data-broken',"
          "JSON.stringify(imgs.filter(i=>!i.complete||i.naturalWidth===0).map(i=>i.getAttribute('src'))));});"
          "</script>")


def chromium() -> str | None:
    """The path of a Chromium binary on PATH, or None."""
    return next((p for p in map(shutil.which, BINARIES) if p), None)


def _run(args: list[str], timeout: float) -> str:
    binary = chromium()
    if binary is None:
        raise BenchError("headless Chromium not found: install it (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        done = subprocess.run([binary, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                              text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise BenchError(f"chromium exited with status {done.returncode}: {tail[:300]}")
    return done.stdout


def render_html(study_dir: Path) -> Path:
    """report.html beside report.md (rewritten from it), as `bench report --format html` writes it."""
    md = Path(study_dir) / "report.md"
    if not md.exists():
        raise BenchError(f"{study_dir}: no report.md (run `bench report {study_dir}` first)")
    out = md.with_suffix(".html")
    out.write_text(md_to_html(md.read_text(), f"{Path(study_dir).name} report"))
    return out


def screenshot(page: Path, png: Path, width: int = 1100, height: int = 3000, timeout: float = 120) -> Path:
    """A PNG of the page's top width x height px, as headless Chromium draws it."""
    png = Path(png).resolve()
    _run([f"--screenshot={png}", f"--window-size={width},{height}", "--virtual-time-budget=10000",
          Path(page).resolve().as_uri()], timeout)
    if not png.exists():
        raise BenchError(f"chromium wrote no screenshot of {page}")
    return png


def image_check(page: Path, timeout: float = 120) -> tuple[int, list[str]]:
    """(number of <img> on the page, the src of those Chromium could not load). The page is copied beside
    itself with a probe script added (report pages escape raw HTML, so none can be in them), so relative
    links resolve as in the page."""
    page = Path(page).resolve()
    probe = page.with_name(f".{page.stem}-imagecheck.html")
    text = page.read_text()
    probe.write_text(text.replace("</body>", _PROBE + "</body>") if "</body>" in text else text + _PROBE)
    try:
        dom = _run(["--dump-dom", "--virtual-time-budget=10000", probe.as_uri()], timeout)
    finally:
        probe.unlink(missing_ok=True)
    body = re.search(r"<body([^>]*)>", dom)
    attrs = dict(re.findall(r'(data-[a-z]+)="([^"]*)"', body.group(1))) if body else {}
    if "data-broken" not in attrs:
        raise BenchError(f"{page}: the page did not finish loading in headless Chromium")
    return int(attrs["data-images"]), json.loads(html.unescape(attrs["data-broken"]))
