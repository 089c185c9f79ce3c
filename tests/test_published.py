"""Published study folders (results/reference/*: tables and report.md, no trial files) are refused by
`bench report` and `bench status` in one line, exit status 2, and left untouched."""

from __future__ import annotations

import shutil
from pathlib import Path

from bench.cli import main

REPO = Path(__file__).parent.parent
REFERENCE = REPO / "results" / "reference" / "unlearned-2026-11-26" / "timesteps"


def test_a_published_copy_is_refused_in_one_line(tmp_path, capsys):
    copy = tmp_path / "reference" / "timesteps"
    shutil.copytree(REFERENCE, copy)
    before = {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()}
    assert main(["report", str(copy)]) == 2
    assert main(["status", str(REPO / "ablations" / "timesteps.yaml"), "--results", str(tmp_path / "reference")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith(f"error: {copy}: a published copy") for line in lines)
    assert {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()} == before
