"""Workers on several machines: three `bench worker` processes share one study through a real PostgreSQL server
(started here on 127.0.0.1), with claims in the database (advisory locks) and no file lock at all, as
processes on separate hosts would. One is SIGKILLed mid-trial after writing checkpoints; a survivor takes
the trial over when the server releases the dead worker's claim, and resumes it from the dead worker's
newest checkpoint. Skipped only where the server binaries are missing (never in CI: .ci/run installs them
and sets PALETTE_BENCH_REQUIRE_POSTGRES, which turns the skip into a failure).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import optuna
import pandas as pd
import pytest
from _postgres import REQUIRE_ENV, missing_reason, postgres_server
from _reliability import (
    REPO,
    TWO_STAGE_SWEEP,
    TWO_STAGES,
    assert_exactly_once,
    assert_same_weights,
    bench_cmd,
    comparable_records,
    final_weights,
    forked_bench,
    optuna_trials,
    run_args,
    run_dirs,
    subprocess_env,
    tiny_study,
)

from bench import cli
from bench.claims import ServerClaims
from bench.runner import make_storage
from model.errors import ConfigError
from model.faults import ENV as FAULT_ENV

# Six trials over two stages (two per-stage Optuna studies); each inpainting run is shared by two trials.
STAGES, SWEEP = TWO_STAGES, TWO_STAGE_SWEEP
SEEDS = [0, 1]


@pytest.fixture(scope="module")
def server():
    reason = missing_reason()
    if reason is not None:
        if os.environ.get(REQUIRE_ENV):
            pytest.fail(f"{reason} (and {REQUIRE_ENV} is set: CI must run this test)")
        pytest.skip(reason)
    with postgres_server() as url:
        yield url


def test_three_workers_on_postgres_one_killed_mid_trial(server, tmp_path):
    study_file = tiny_study(tmp_path / "pg.yaml", name="pg", stages=STAGES, sweep=SWEEP, seeds=SEEDS,
                            baseline={"transfer_source": "scratch"})
    results = tmp_path / "shared"  # the folder every "host" mounts
    worker = bench_cmd(run_args(study_file, results, "--storage", server, "--poll", "0.3"))
    worker[worker.index("run")] = "worker"
    # worker 0 dies (SIGKILL, from model.faults) right after the 3rd checkpoint of its first run: mid epoch 2
    envs = [{**subprocess_env(), FAULT_ENV: "checkpoint-saved:3:kill"}, subprocess_env(), subprocess_env()]
    procs = [subprocess.Popen(worker, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for env in envs]
    # meanwhile, the same study uninterrupted on one machine (SQLite, file locks): the bitwise reference
    reference = tmp_path / "reference"
    assert forked_bench(run_args(study_file, reference), log=tmp_path / "reference.log") == 0
    outputs = [p.communicate(timeout=240) for p in procs]
    codes = [p.returncode for p in procs]
    assert codes == [-9, 0, 0], [err[-2000:] for _, err in outputs]
    for _, err in outputs[1:]:
        assert "Traceback" not in err, err[-3000:]

    study_dir = results / "pg"
    keys = {p.name for p in (study_dir / "trials").iterdir()}
    assert len(keys) == 6 and all((study_dir / "trials" / k / "trial.json").exists() for k in keys)
    # exactly once in Optuna, per stage study: one COMPLETE trial per point x seed, the rest 'interrupted'
    trials = optuna_trials(server, "pg")
    assert_exactly_once(trials, keys)
    store = make_storage(server)
    for stage, n in {"inpaint": 2, "color": 4}.items():  # trials per stage: points of that stage x seeds
        stage_trials = optuna.load_study(study_name=f"pg/{stage}", storage=store).get_trials(deepcopy=False)
        complete = [t for t in stage_trials if t.state == optuna.trial.TrialState.COMPLETE]
        assert len(complete) == len({t.user_attrs["key"] for t in complete}) == n
        assert all(t.user_attrs["stage"] == stage for t in stage_trials)
    killed = {t.user_attrs["key"] for t in trials if t.state == optuna.trial.TrialState.FAIL}
    assert len(killed) == 1, "the SIGKILLed worker's trial was not taken over (or more than one was interrupted)"

    # records: one row per trial x stage x epoch x metric; trials.csv complete; same as the reference
    records = comparable_records(study_dir)
    assert not records.duplicated(["trial", "stage", "epoch", "metric"]).any()
    pd.testing.assert_frame_equal(records.sort_values(list(records.columns)).reset_index(drop=True),
                                  comparable_records(reference / "pg").sort_values(list(records.columns))
                                  .reset_index(drop=True))
    table = pd.read_csv(study_dir / "trials.csv")
    assert len(table) == 6 and table["trial"].is_unique and (table["state"] == "complete").all()
    # every run (the killed one included) ends with the reference's weights, bitwise, each epoch trained once
    runs = run_dirs(study_dir)
    assert [r.name for r in runs] == [r.name for r in run_dirs(reference / "pg")] and len(runs) == 6
    for run in runs:
        assert_same_weights(final_weights(run), final_weights(reference / "pg" / "runs" / run.name), run.name)
        assert list(pd.read_json(run / "history.json")["epoch"]) == [1, 2]
    # the workers behaved as separate hosts: no file lock anywhere in the shared folder
    assert sorted(results.rglob("*.lock")) == []
    # bench status reads the claims and the study from the shared database
    assert cli.main(["status", str(study_file), "--scale", "smoke", "--results", str(results), "--storage", server,
                     "--check"]) == 0


HOLDER = """
import sys, time
from pathlib import Path
from bench.claims import ServerClaims
with ServerClaims(sys.argv[1]) as claims, claims.trial(Path(sys.argv[2])) as got:
    print(got, flush=True)
    time.sleep(60)
"""


def test_server_claims_are_exclusive_and_released_when_the_holder_is_killed(server, tmp_path):
    trial_dir = tmp_path / "s" / "trials" / "t1"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, server, str(trial_dir)], cwd=REPO, text=True,
                              stdout=subprocess.PIPE, env=subprocess_env())
    try:
        assert holder.stdout.readline().strip() == "True"
        with ServerClaims(server) as mine:
            assert mine.held(trial_dir)
            with mine.trial(trial_dir) as got:
                assert not got
            with mine.trial(tmp_path / "s" / "trials" / "t2") as got:
                assert got  # another trial is free
            holder.send_signal(signal.SIGKILL)
            holder.wait(timeout=10)
            deadline = time.monotonic() + 10  # the server ends the dead client's session at once (socket closed)
            while mine.held(trial_dir) and time.monotonic() < deadline:
                time.sleep(0.05)
            with mine.trial(trial_dir) as got:
                assert got
    finally:
        holder.kill()
        holder.wait()


def test_unreachable_server_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match=r"--storage 'postgresql\+psycopg2://nobody@127.0.0.1:1/x': cannot open"):
        make_storage("postgresql+psycopg2://nobody@127.0.0.1:1/x")
