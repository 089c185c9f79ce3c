"""Concurrency: three `bench run` workers started at once on one study and one storage share the grid, and
every point x seed runs exactly once (SQLite, and an Optuna journal file)."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import time

import pandas as pd
import pytest
from _postgres import REQUIRE_ENV, missing_reason, postgres_server
from _reliability import (
    REPO,
    TWO_STAGES,
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
from bench.claims import FileClaims, ServerClaims
from bench.locks import file_lock
from bench.runner import make_storage
from bench.study import load_study
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


# An inpainting run and two colorization trials: one fine-tuned from it (grid order puts it first), one from scratch.
CHAIN_SWEEP = {"zip": {"stage": ["inpaint", "color", "color"], "transfer_source": ["scratch", "inpaint", "scratch"]}}


def _chain_study(tmp_path, sweep=CHAIN_SWEEP):
    """The study file, and its trials: [inpainting, colorization from it, ...]."""
    study_file = tiny_study(tmp_path / "chain.yaml", name="chain", stages=TWO_STAGES, sweep=sweep)
    trials = load_study(study_file, "smoke").trials
    assert trials[1].run.chain()[0].key == trials[0].run.key  # the transfer starts from the inpainting run
    return study_file, trials


@contextlib.contextmanager
def _another_worker_trains(study_dir, trial):
    """Hold what a worker running `trial` holds: its claim and its run's lock."""
    with FileClaims().trial(study_dir / "trials" / trial.key) as claimed, \
            file_lock(study_dir / "runs" / f".{trial.run.key}.lock", blocking=False) as locked:
        assert claimed and locked
        yield


def _state(study_dir, trial) -> str | None:
    f = study_dir / "trials" / trial.key / "trial.json"
    return pd.read_json(f, typ="series")["state"] if f.exists() else None


def test_a_worker_takes_a_ready_trial_instead_of_waiting_on_another_workers_run(tmp_path):
    """Another worker trains the inpainting run: the transfer trial would wait on it, so this worker defers it
    and runs the colorization from scratch (in grid order it would have blocked until the other one finished)."""
    study_file, (inpaint, transfer, scratch) = _chain_study(tmp_path)
    results = tmp_path / "R"
    study_dir = results / "chain"
    with _another_worker_trains(study_dir, inpaint):
        assert wait_bench(fork_bench(run_args(study_file, results, "--trials", "1")), timeout=120) == 0
    assert _state(study_dir, scratch) == "complete"
    assert _state(study_dir, transfer) is None and _state(study_dir, inpaint) is None
    assert not (study_dir / "runs" / inpaint.run.key / "done.json").exists()


def test_a_worker_waits_on_another_workers_run_when_no_other_trial_is_ready(tmp_path):
    """Every remaining trial waits on the inpainting run another worker trains: the worker takes the transfer and
    waits for that run's lock (as before); the other worker stops without finishing it, so this one trains it."""
    sweep = {"zip": {"stage": ["inpaint", "color"], "transfer_source": ["scratch", "inpaint"]}}
    study_file, (inpaint, transfer) = _chain_study(tmp_path, sweep)
    results = tmp_path / "R"
    study_dir = results / "chain"
    with _another_worker_trains(study_dir, inpaint):
        pid = fork_bench(run_args(study_file, results))
        time.sleep(3)
        assert os.waitpid(pid, os.WNOHANG) == (0, 0), "the worker ended instead of waiting for the run"
        assert _state(study_dir, transfer) is None
    assert wait_bench(pid, timeout=120) == 0
    assert _state(study_dir, transfer) == "complete"
    assert (study_dir / "runs" / inpaint.run.key / "done.json").exists()
    assert _state(study_dir, inpaint) is None  # claimed by the other worker during the pass: skipped


def test_run_held_probes_a_run_claim_without_waiting(tmp_path):
    runs_dir = tmp_path / "s" / "runs"
    probe = FileClaims()
    assert not probe.run_held(runs_dir, "inpaint-1")
    with FileClaims().run(runs_dir, "inpaint-1"):
        assert probe.run_held(runs_dir, "inpaint-1") and not probe.run_held(runs_dir, "inpaint-2")
    assert not probe.run_held(runs_dir, "inpaint-1")
    reason = missing_reason()  # the same claim held in PostgreSQL (workers on several machines)
    if reason is not None:
        if os.environ.get(REQUIRE_ENV):
            pytest.fail(f"{reason} (and {REQUIRE_ENV} is set: CI must run this test)")
        pytest.skip(reason)
    with postgres_server() as url, ServerClaims(url) as mine, ServerClaims(url) as theirs:
        assert not mine.run_held(runs_dir, "inpaint-1")
        with theirs.run(runs_dir, "inpaint-1"):
            assert mine.run_held(runs_dir, "inpaint-1") and not mine.run_held(runs_dir, "inpaint-2")
        assert not mine.run_held(runs_dir, "inpaint-1")
        assert not theirs.run_held(runs_dir, "inpaint-1")  # the probe let go of the lock it took
        with mine.run(tmp_path / "t" / "runs", "inpaint-1"):  # another study's run of the same key
            assert not theirs.run_held(runs_dir, "inpaint-1")
