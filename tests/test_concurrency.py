"""Concurrency: three `bench run` workers started at once on one study and one storage share the grid, and
every point x seed runs exactly once (SQLite, and an Optuna journal file)."""

from __future__ import annotations

import re
import subprocess

import pandas as pd
import pytest
from _reliability import (
    REPO,
    assert_exactly_once,
    bench_cmd,
    comparable_records,
    optuna_trials,
    run_args,
    run_dirs,
    subprocess_env,
    tiny_study,
)

# Five trials: two eval settings x two seeds, plus the batch-size point (five distinct runs).
SWEEP = {"zip": {"eval.steps": [2, 3, 2], "train.batch_size": [8, 8, 4]}}
SEEDS = [0, 1]


@pytest.mark.parametrize("storage", ["sqlite", "journal"])
def test_three_workers_share_the_grid_exactly_once(storage, tmp_path):
    study_file = tiny_study(tmp_path / "grid.yaml", name="grid", sweep=SWEEP, seeds=SEEDS)
    results = tmp_path / "R"
    url = f"sqlite:///{results}/bench.db" if storage == "sqlite" else f"journal:{tmp_path / 'optuna.log'}"
    args = run_args(study_file, results, "--storage", url)
    procs = [subprocess.Popen(bench_cmd(args), cwd=REPO, env=subprocess_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
        assert "database is locked" not in err and "Traceback" not in err, err[-3000:]
    study_dir = results / "grid"
    n = 3 * len(SEEDS)
    trials = pd.read_csv(study_dir / "trials.csv")
    assert len(trials) == n and trials["trial"].is_unique and (trials["state"] == "complete").all()
    assert len(run_dirs(study_dir)) == n
    assert len(list((study_dir / "trials").glob("*/trial.json"))) == n
    records = comparable_records(study_dir)
    assert not records.duplicated(["trial", "stage", "epoch", "metric"]).any()
    assert set(records["trial"]) == set(trials["trial"])
    assert_exactly_once(optuna_trials(url, "grid"), set(trials["trial"]))
    # every run trained exactly once: one history, its epochs 1..E once each
    for run in run_dirs(study_dir):
        history = pd.read_json(run / "history.json")
        assert list(history["epoch"]) == [1, 2]
    # the workers really shared the work (each claims trials with a non-blocking lock)
    ran = [int(re.search(r"(\d+) run, \d+ skipped", out).group(1)) for out, _ in outputs]
    assert sum(ran) == n, [o for o, _ in outputs]
