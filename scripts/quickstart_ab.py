"""Time the quickstart of two commits one after the other on this machine, and compare what they measured.

    python scripts/quickstart_ab.py --old 48a0e25 --new HEAD --out results/quickstart-ab [-- extra bench run args]

Each commit's tree is exported (`git archive`) to a scratch folder and its own `scripts/quickstart.sh` runs
there with this checkout's .venv (PYTHONPATH puts the exported tree's packages first), its results in the
scratch folder. `--new .` runs the working tree as it is instead of a commit. For each side, OUT/<side>/
receives the study folder's trials.csv, records.csv.gz, trivial.csv, study.json and `timing.json` (commit,
wall seconds of the quickstart, its workers, the machine's CPU and load average). Then OUT/summary.md compares
the two (scripts/quickstart_summary.py; rerun it alone to rewrite the summary). Run it on a quiet machine: the
wall time is the measurement. An interrupted side is run again from the start.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STUDY = "paper"  # what scripts/quickstart.sh runs (ablations/paper.yaml)


def export(commit: str, dest: Path) -> str:
    """The tree of `commit` ('.' = the working tree) in `dest`; returns the commit's full hash (or 'worktree')."""
    dest.mkdir(parents=True)
    if commit == ".":
        ignored = shutil.ignore_patterns(".git", ".venv", "results", "__pycache__", "*.egg-info")
        shutil.copytree(ROOT, dest, ignore=ignored, dirs_exist_ok=True)
        return "worktree@" + subprocess.check_output(["git", "rev-parse", "HEAD"], cwd=ROOT, text=True).strip()
    full = subprocess.check_output(["git", "rev-parse", commit], cwd=ROOT, text=True).strip()
    archive = subprocess.run(["git", "archive", full], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return full


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def run_side(side: str, commit: str, out: Path, scratch: Path, extra: list[str]) -> None:
    tree = scratch / side
    full = export(commit, tree)
    (tree / ".venv").symlink_to(ROOT / ".venv")
    results = tree / "results"
    env = {**os.environ, "PYTHONPATH": str(tree)}
    print(f"[{side}] {full}: bash scripts/quickstart.sh --results {results} {' '.join(extra)}", flush=True)
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    rc = subprocess.run(["bash", "scripts/quickstart.sh", "--results", str(results), *extra], cwd=tree,
                        env=env).returncode
    wall = time.perf_counter() - t0
    folder = out / side
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    src = results / STUDY
    for name in ("trials.csv", "trivial.csv", "study.json"):
        shutil.copy(src / name, folder / name)
    with open(src / "records.csv", "rb") as f, gzip.open(folder / "records.csv.gz", "wb") as g:
        shutil.copyfileobj(f, g)
    workers = int(env.get("WORKERS") or min(2, os.cpu_count() or 1))
    (folder / "timing.json").write_text(json.dumps({
        "commit": full, "wall_seconds": wall, "exit_status": rc, "workers": workers, "cpu": cpu_model(),
        "cores": os.cpu_count(), "load_average_start": load, "load_average_end": os.getloadavg()[0],
        "extra_args": extra, "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z")}, indent=2))
    print(f"[{side}] {wall / 60:.1f} min, exit status {rc}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", required=True, help="today's commit")
    ap.add_argument("--new", default=".", help="the commit to compare ('.': the working tree, the default)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--only", choices=["old", "new"], help="run one side (the other's folder is kept)")
    ap.add_argument("--scratch", type=Path, help="where the trees and their results go, kept afterwards "
                    "(e.g. to add seeds to a side's study); default: a temporary folder, removed at the end")
    ap.add_argument("extra", nargs="*", help="after --: arguments for `bench run` (e.g. --scale smoke)")
    args = ap.parse_args(argv)
    if not (ROOT / ".venv" / "bin" / "bench").exists():
        print(f"{ROOT / '.venv'}: no environment (run bash scripts/setup.sh first)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="quickstart-ab-") as tmp:
        scratch = args.scratch or Path(tmp)
        for side, commit in (("old", args.old), ("new", args.new)):
            if args.only in (None, side):
                if (scratch / side).exists():
                    shutil.rmtree(scratch / side)  # an interrupted side runs again from the start
                run_side(side, commit, args.out, scratch, args.extra)
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "quickstart_summary.py"), str(args.out)]).returncode


if __name__ == "__main__":
    sys.exit(main())
