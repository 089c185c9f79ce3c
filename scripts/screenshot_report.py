#!/usr/bin/env python3
"""Look at a report as a reader would: render STUDY_DIR/report.md to report.html, screenshot it in headless
Chromium and list the images that did not load (exit status 1 if any did).

    python scripts/screenshot_report.py results/paper --out /tmp/paper.png [--width 1100 --height 3000]

Needs Chromium (Debian: apt-get install chromium); the code is bench/report/screenshot.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.report import screenshot  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("study_dir", type=Path)
    p.add_argument("--out", type=Path, help="the screenshot (default: STUDY_DIR/report-screenshot.png)")
    p.add_argument("--width", type=int, default=1100)
    p.add_argument("--height", type=int, default=3000)
    args = p.parse_args(argv)
    page = screenshot.render_html(args.study_dir)
    shot = screenshot.screenshot(page, args.out or args.study_dir / "report-screenshot.png", args.width, args.height)
    n, broken = screenshot.image_check(page)
    print(f"{page}: {n} images, {len(broken)} did not load{': ' + ', '.join(broken) if broken else ''}")
    print(f"screenshot: {shot}")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
