"""Numerical and disk faults: a diverged trial fails with its reason and the study goes on; a failed write is
one line, exit 2, and leaves the records as they were; a torn checkpoint is never resumed from."""

from __future__ import annotations

import math
import os
import re

import optuna
import pandas as pd
import pytest
import torch
from _reliability import (
    TINY_BASE,
    assert_same_weights,
    comparable_records,
    final_weights,
    leftovers,
    optuna_trials,
    run_args,
    tiny_study,
)

from bench import cli
from bench.presets import SCALES
from bench.study import _flatten, resolve_config
from model import faults
from model.checkpoint import latest_checkpoint, load_checkpoint
from model.trainer import Budget, train

COMPLETE, FAIL = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL


@pytest.fixture
def fault(monkeypatch):
    """fault('site:count[:action]') arms model.faults in this process (disarmed after the test)."""

    def arm(spec: str | None) -> None:
        faults._reached.clear()
        if spec:
            monkeypatch.setenv(faults.ENV, spec)
        else:
            monkeypatch.delenv(faults.ENV, raising=False)

    yield arm
    faults._reached.clear()


def bench(capsys, *args) -> tuple[int, str, str]:
    """Exit code, stdout (whitespace collapsed: rich wraps the summary title) and stderr of `bench ARGS`."""
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, " ".join(out.split()), err


def error_line(err: str) -> str:
    """The error: the last line of stderr (above it, the progress bars of the trials that ran)."""
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and not any(line.startswith("error") for line in err.splitlines()[:-1])
    return last


# the complete trial of a smoke study does not beat its trivial baseline: that line (issue 13) comes just before
UNLEARNED = r"┘ (?:1 of 1 trials did not learn .*? at this budget )?"


def tables(study_dir):
    return {name: (study_dir / name).read_bytes() for name in ("records.csv", "trials.csv")}


def test_nan_loss_fails_that_trial_keeps_the_last_good_checkpoint_and_the_study_goes_on(tmp_path, capsys, fault):
    study_file = tiny_study(tmp_path / "s.yaml")  # two trials, 2 epochs of 2 steps, checkpoint every step
    results = tmp_path / "R"
    study_dir = results / "tiny"
    # the first trial run's third step (epoch 2, step 1) diverges: eval.steps 3's, the costlier one runs first
    fault("loss:3:nan")
    code, out, err = bench(capsys, *run_args(study_file, results))
    assert code == 1, err  # a failed trial: exit status 1, after the records and the report
    assert re.search(r"2 run, 0 skipped, 1 failed", out)
    assert re.search(UNLEARNED + r"1 of 2 trials failed \(.* seed 0\): reasons in \S*/tiny/trials\.csv "
                     r"\(column reason\) and \S*/tiny/trials/<trial>/traceback\.txt; "
                     r"`bench run \S* --retry-failed` runs them again$", out)
    trials = pd.read_csv(study_dir / "trials.csv")
    assert list(trials["state"]) == ["complete", "failed"]  # grid order; the second ran first (longest first)
    assert trials["param:eval.steps"].tolist() == [2, 3]
    reason = trials["reason"][1]
    assert re.fullmatch(r"TrainingDiverged: loss became nan at epoch 2, step 1; last good checkpoint kept in .*",
                        reason)
    ot = {t.user_attrs["key"]: t for t in optuna_trials(f"sqlite:///{results}/bench.db", "tiny")}
    failed_key = trials["trial"][1]
    assert ot[failed_key].state == FAIL and ot[failed_key].user_attrs["fail_reason"] == reason
    assert ot[trials["trial"][0]].state == COMPLETE
    # the last good checkpoint is kept and loads: end of epoch 1, finite weights
    run_dir = study_dir / "runs" / pd.read_json(study_dir / "trials" / failed_key / "trial.json",
                                                typ="series")["chain"][0]["key"]
    ckpt = load_checkpoint(latest_checkpoint(run_dir / "checkpoints"))
    assert ckpt["progress"]["epoch"] == 1 and ckpt["progress"]["steps"] == 2
    assert all(torch.isfinite(v).all() for v in ckpt["net"].values())
    assert (study_dir / "trials" / failed_key / "traceback.txt").exists()

    # running the study again does not run the failed trial again
    fault(None)
    before = tables(study_dir)
    code, out, _ = bench(capsys, *run_args(study_file, results))
    assert code == 1 and re.search(r"0 run, 2 skipped, 0 failed", out)  # the study still holds a failed trial
    assert re.search(UNLEARNED + r"1 of 2 trials failed .* runs them again$", out)  # the last line
    assert tables(study_dir) == before
    assert len(optuna_trials(f"sqlite:///{results}/bench.db", "tiny")) == 2

    # --retry-failed does: it resumes from the last good checkpoint and reaches the weights of a clean run
    code, out, _ = bench(capsys, *run_args(study_file, results, "--retry-failed"))
    assert code == 0 and re.search(r"1 run, 1 skipped, 0 failed", out)
    trials = pd.read_csv(study_dir / "trials.csv")
    assert list(trials["state"]) == ["complete", "complete"] and trials["trial"].is_unique
    records = comparable_records(study_dir)
    assert not records.duplicated(["trial", "stage", "epoch", "metric"]).any()
    states = sorted((t.user_attrs["key"] == failed_key, t.state.name)
                    for t in optuna_trials(f"sqlite:///{results}/bench.db", "tiny"))
    assert states == [(False, "COMPLETE"), (True, "COMPLETE"), (True, "FAIL")]
    clean = tmp_path / "clean"
    assert bench(capsys, *run_args(study_file, clean))[0] == 0
    pd.testing.assert_frame_equal(records, comparable_records(clean / "tiny"))
    assert_same_weights(final_weights(run_dir), final_weights(clean / "tiny" / "runs" / run_dir.name))


def test_a_huge_learning_rate_is_a_clear_failure_reason(tmp_path, capsys):
    study_file = tiny_study(tmp_path / "s.yaml")
    results = tmp_path / "R"
    code, out, err = bench(capsys, *run_args(study_file, results, "--set", "train.lr=1.0e30"))
    assert code == 1, err
    assert re.search(r" 2 of 2 trials failed .* runs them again$", out)
    trials = pd.read_csv(results / "tiny" / "trials.csv")
    assert list(trials["state"]) == ["failed", "failed"]
    assert trials["reason"].str.match(r"TrainingDiverged: loss became (nan|inf|-inf) at epoch 1, step \d").all()
    for t in optuna_trials(f"sqlite:///{results}/bench.db", "tiny"):
        assert t.state == FAIL and t.user_attrs["fail_reason"].startswith("TrainingDiverged: loss became")


def test_a_full_disk_is_one_line_exit_2_and_leaves_the_records_intact(tmp_path, capsys, fault):
    study_file = tiny_study(tmp_path / "s.yaml")
    results = tmp_path / "R"
    study_dir = results / "tiny"
    assert bench(capsys, *run_args(study_file, results, "--trials", "1"))[0] == 0
    before = tables(study_dir)
    assert len(pd.read_csv(study_dir / "trials.csv")) == 1

    # the disk fills up while the second trial writes a checkpoint
    fault("checkpoint-rename:2:enospc")
    code, out, err = bench(capsys, *run_args(study_file, results))
    assert code == 2
    assert re.fullmatch(r"error: .*/checkpoints/ckpt-\d{10}\.pt: No space left on device \(finished trials and "
                        r"records are intact; fix it and run the same command again\)", error_line(err)), err
    assert tables(study_dir) == before
    assert leftovers(study_dir) == []  # the temporary file of the failed write is removed
    interrupted = [t for t in optuna_trials(f"sqlite:///{results}/bench.db", "tiny") if t.state == FAIL]
    assert len(interrupted) == 1 and "No space left on device" in interrupted[0].user_attrs["fail_reason"]
    assert interrupted[0].user_attrs["fail_reason"].startswith("interrupted")

    # ... then while the tables are rewritten after that trial
    fault("records-rename:1:enospc")
    code, _, err = bench(capsys, *run_args(study_file, results))
    assert code == 2 and re.fullmatch(r"error: .*records\.csv: No space left on device .*", error_line(err)), err
    assert tables(study_dir) == before

    # space is back: the same command finishes, nothing lost or doubled
    fault(None)
    assert bench(capsys, *run_args(study_file, results))[0] == 0
    trials = pd.read_csv(study_dir / "trials.csv")
    assert list(trials["state"]) == ["complete", "complete"] and trials["trial"].is_unique
    assert not comparable_records(study_dir).duplicated(["trial", "stage", "epoch", "metric"]).any()
    complete = [t.user_attrs["key"] for t in optuna_trials(f"sqlite:///{results}/bench.db", "tiny")
                if t.state == COMPLETE]
    assert sorted(complete) == sorted(trials["trial"])
    assert leftovers(study_dir) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_results_folder_is_one_line_exit_2(tmp_path, capsys):
    study_file = tiny_study(tmp_path / "s.yaml")
    results = tmp_path / "R"
    results.mkdir(mode=0o555)
    try:
        code, _, err = bench(capsys, *run_args(study_file, results))
    finally:
        results.chmod(0o755)
    assert code == 2 and re.fullmatch(r"error: .*R: results folder is not writable .*", err.strip())
    assert not any(results.iterdir())


def tiny_config(**dotted):
    return resolve_config([("preset", SCALES["smoke"]), ("base", _flatten(TINY_BASE)), ("test", dotted)])


def test_a_torn_checkpoint_is_set_aside_and_never_resumed_from(tmp_path, capsys):
    """A checkpoint cut short under its final name (a failing disk, an interrupted copy of the results)."""
    cfg = tiny_config(**{"eval.every_epochs": 0})
    train(cfg, tmp_path / "clean", device="cpu")
    run = tmp_path / "run"
    assert train(cfg, run, device="cpu", budget=Budget(epochs=1)).status == "paused"
    newest = latest_checkpoint(run / "checkpoints")
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 3])
    result = train(cfg, run, device="cpu")
    assert result.status == "done" and result.resumed_from != newest
    assert newest.with_name(newest.name + ".bad").exists()
    assert "not a readable checkpoint" in capsys.readouterr().err
    assert_same_weights(final_weights(run), final_weights(tmp_path / "clean"))
    assert math.isfinite(result.history[-1]["loss"])
