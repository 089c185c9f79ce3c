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
    fork_bench,
    optuna_trials,
    run_args,
    run_dirs,
    subprocess_env,
    tiny_study,
    wait_bench,
)

from bench import cli
from bench.runner import make_storage
from model.errors import ConfigError

# Six trials: three points (two eval settings, one other batch size) x two seeds, six distinct runs.
SWEEP = {"zip": {"eval.steps": [2, 3, 2], "train.batch_size": [8, 8, 4]}}
SEEDS = [0, 1]


def test_three_bench_processes_on_sqlite_share_the_grid_exactly_once(tmp_path):
    """Three fresh interpreters (`python -m bench run`), the default SQLite storage."""
    study_file = tiny_study(tmp_path / "grid.yaml", name="grid", sweep=SWEEP, seeds=SEEDS)
    results = tmp_path / "R"
    url = f"sqlite:///{results}/bench.db"
    args = run_args(study_file, results, "--storage", url)
    procs = [subprocess.Popen(bench_cmd(args), cwd=REPO, env=subprocess_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err[-3000:]
        assert "database is locked" not in err and "Traceback" not in err, err[-3000:]
    assert_shared_exactly_once(results / "grid", url, [out for out, _ in outputs])


def test_three_workers_on_a_journal_file_share_the_grid_exactly_once(tmp_path, capsys):
    """Three workers forked at once, an Optuna journal file (`--storage journal:PATH`)."""
    study_file = tiny_study(tmp_path / "grid.yaml", name="grid", sweep=SWEEP, seeds=SEEDS)
    results = tmp_path / "R"
    url = f"journal:{tmp_path / 'optuna.log'}"
    logs = [tmp_path / f"worker{i}.log" for i in range(3)]
    pids = [fork_bench(run_args(study_file, results, "--storage", url), log=log) for log in logs]
    codes = [wait_bench(pid) for pid in pids]
    texts = [log.read_text() for log in logs]
    assert codes == [0, 0, 0], texts
    assert not any("Traceback" in t for t in texts), texts
    assert_shared_exactly_once(results / "grid", url, texts)
    # `bench list` reads the journal too
    assert cli.main(["list", "--storage", url]) == 0
    out = capsys.readouterr().out
    assert "grid" in out and "L1 " in out  # the study's quality metric named beside its best value


def test_storage_kinds(tmp_path):
    from optuna.storages import JournalStorage, RDBStorage

    assert isinstance(make_storage(str(tmp_path / "a.log")), JournalStorage)
    assert isinstance(make_storage(str(tmp_path / "b.journal")), JournalStorage)
    assert isinstance(make_storage(f"journal:{tmp_path / 'sub' / 'c'}"), JournalStorage)  # folder created
    sqlite = make_storage(f"sqlite:///{tmp_path / 'deeper' / 'd.db'}")
    assert isinstance(sqlite, RDBStorage) and (tmp_path / "deeper" / "d.db").exists()
    with pytest.raises(ConfigError, match=r"--storage 'nope': expected a database URL"):
        make_storage("nope")
    with pytest.raises(ConfigError, match=r"a journal storage is a file, not a folder"):
        make_storage(f"journal:{tmp_path}")


def assert_shared_exactly_once(study_dir, url: str, outputs: list[str]) -> None:
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
    ran = [int(re.search(r"(\d+) run, \d+ skipped", out).group(1)) for out in outputs]
    assert sum(ran) == n, outputs
