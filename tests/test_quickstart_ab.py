"""scripts/quickstart_summary.py: the side-by-side summary of two quickstarts (scripts/quickstart_ab.py) from
real study folders: wall-time ratio, the shares of the workers' time, and a KID verdict only where the
evaluation's interval resolves it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from _reliability import TINY_BASE

from bench.cli import main

SUMMARY = Path(__file__).resolve().parent.parent / "scripts" / "quickstart_summary.py"


@pytest.fixture(scope="module")
def study_folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ab")
    spec = {"name": "paper", "quality_metric": "l1", "base": TINY_BASE, "seeds": [0],
            "sweep": {"grid": {"model.dropout": [0.0, 0.1]}}, "baseline": {"model.dropout": 0.0}}
    (root / "paper.yaml").write_text(yaml.safe_dump(spec))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PALETTE_BENCH_CACHE", str(root / "cache"))
        assert main(["run", str(root / "paper.yaml"), "--scale", "smoke", "--results", str(root / "results")]) == 0
    return root / "results" / "paper"


def _side(out: Path, side: str, study: Path, wall: float, shift_se: float = 0.0) -> None:
    folder = out / side
    folder.mkdir(parents=True)
    for name in ("trivial.csv", "study.json", "records.csv"):
        shutil.copy(study / name, folder / name)
    trials = pd.read_csv(study / "trials.csv")
    trials["l1"] += shift_se * trials["l1_se"]
    trials.to_csv(folder / "trials.csv", index=False)
    (folder / "timing.json").write_text(json.dumps({
        "commit": "0123456789abcdef" if side == "old" else "worktree@fedcba9876543210", "wall_seconds": wall,
        "exit_status": 0, "workers": 2, "cpu": "test CPU", "cores": 2, "load_average_start": 0.1}))


def test_the_summary_states_the_ratio_the_shares_and_a_verdict_only_where_resolved(study_folder, tmp_path):
    out = tmp_path / "ab"
    _side(out, "old", study_folder, wall=600.0)
    _side(out, "new", study_folder, wall=300.0, shift_se=6.0)  # 6 se apart: beyond the 2.8 se interval
    done = subprocess.run([sys.executable, str(SUMMARY), str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    text = (out / "summary.md").read_text()
    assert "`bash scripts/quickstart.sh`: 5 min, 0.50× the 10 min of 0123456" in text
    assert "final L1 worse beyond its interval: `main` dropout=0, `main` dropout=0.1" in text
    rec = pd.read_csv(study_folder / "records.csv")
    own = rec[rec["target_stage"].astype(str).str.lower() == "true"]
    share = own.loc[own["metric"] == "epoch_seconds", "value"].sum() / (2 * 300.0)
    assert f"{100 * share:.0f}% of the workers' time trained" in text
    rows = [line for line in text.splitlines() if line.startswith("| `main`")]
    assert len(rows) == 2 and all("| worse |" in r for r in rows)

    same = tmp_path / "same"
    _side(same, "old", study_folder, wall=600.0)
    _side(same, "new", study_folder, wall=600.0)
    assert subprocess.run([sys.executable, str(SUMMARY), str(same)], capture_output=True).returncode == 0
    text = (same / "summary.md").read_text()
    assert "1.00×" in text and "no final L1 worse beyond its interval" in text and "| no difference resolved |" in text


def test_a_missing_side_is_one_line_and_exit_2(tmp_path):
    done = subprocess.run([sys.executable, str(SUMMARY), str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "timing.json" in done.stderr
    assert not (tmp_path / "summary.md").exists()
