"""Kill anywhere: a study SIGKILLed at any point and run again ends exactly as an uninterrupted run.

Kill points are chosen deterministically through model.faults (PALETTE_BENCH_FAULT=<site>:<count>): after a
training step, inside evaluation, between a checkpoint's temporary file and its rename, after the checkpoint
but before history.json, after trial.json but before Optuna is told, and inside the records rebuild before
its rename. A second test kills at seeded random moments (anywhere, Optuna's SQLite writes included).
Each run is a forked child of the test process (as a separate `bench run` process, without its start-up).
"""

from __future__ import annotations

import random
import time

import pandas as pd
import pytest
from _reliability import (
    TWO_STAGE_SWEEP,
    TWO_STAGES,
    assert_exactly_once,
    assert_same_weights,
    comparable_records,
    comparable_trials,
    final_weights,
    forked_bench,
    leftovers,
    optuna_trials,
    run_args,
    run_dirs,
    tiny_study,
)

# Three trials over two stages: the inpainting run is shared by trial 1 and (as upstream) trial 3.
STAGES, SWEEP = TWO_STAGES, TWO_STAGE_SWEEP

# Each entry is one `bench run` that must die at that site (count = arrival in that process). In order:
# inpaint run killed mid-epoch 2; killed in its last evaluation; killed after the final checkpoint but before
# history.json; the colour-from-scratch run killed between a checkpoint's temp file and rename; killed after
# trial 2's trial.json but before Optuna hears of it; killed writing trials.csv after trial 3.
KILLS = ["train-step:3", "evaluate:1", "checkpoint-saved:1", "checkpoint-rename:2", "trial-finish:1",
         "records-rename:2"]


@pytest.fixture(scope="module")
def study_file(tmp_path_factory):
    return tiny_study(tmp_path_factory.mktemp("kill") / "kill.yaml", name="kill", stages=STAGES, sweep=SWEEP,
                      baseline={"transfer_source": "scratch"})


DURATION = {}  # seconds the uninterrupted run took on this machine, now


@pytest.fixture(scope="module")
def reference(study_file, tmp_path_factory):
    """The uninterrupted run."""
    results = tmp_path_factory.mktemp("reference")
    start = time.monotonic()
    assert forked_bench(run_args(study_file, results), log=results.parent / "reference.log") == 0
    DURATION["reference"] = time.monotonic() - start
    return results / "kill"


def assert_same_as_reference(study_dir, reference, storage: str) -> None:
    rec, ref = comparable_records(study_dir), comparable_records(reference)
    assert len(rec) == len(ref) > 0
    pd.testing.assert_frame_equal(rec, ref)
    assert not rec.duplicated(["trial", "stage", "epoch", "metric"]).any()
    pd.testing.assert_frame_equal(comparable_trials(study_dir), comparable_trials(reference))
    runs = run_dirs(study_dir)
    assert [r.name for r in runs] == [r.name for r in run_dirs(reference)] and len(runs) == 3
    for run in runs:
        assert_same_weights(final_weights(run), final_weights(reference / "runs" / run.name), run.name)
    keys = {p.name for p in (study_dir / "trials").iterdir()}
    assert len(keys) == 3 and all((study_dir / "trials" / k / "trial.json").exists() for k in keys)
    assert_exactly_once(optuna_trials(storage, "kill"), keys)
    assert leftovers(study_dir) == []  # killed writers' temporary files are cleaned up


def test_sigkill_at_every_site_then_rerun_equals_uninterrupted(study_file, reference, tmp_path):
    results = tmp_path / "results"
    log = tmp_path / "bench.log"
    for fault in KILLS:
        code = forked_bench(run_args(study_file, results), fault=fault, log=log)
        assert code == -9, f"{fault}: the run was expected to die there (exit {code}); log: {log.read_text()[-2000:]}"
    assert forked_bench(run_args(study_file, results), log=log) == 0, log.read_text()[-3000:]
    assert_same_as_reference(results / "kill", reference, f"sqlite:///{results}/bench.db")
    # a further run changes nothing and runs nothing
    before = (results / "kill" / "records.csv").read_bytes()
    assert forked_bench(run_args(study_file, results), log=log) == 0
    assert (results / "kill" / "records.csv").read_bytes() == before


def test_sigkill_at_random_moments_then_rerun_equals_uninterrupted(study_file, reference, tmp_path):
    """Seeded random kill times, scaled to how long the whole study takes here (so they land inside it; the
    machine's load varies, so how many land before a run completes varies too)."""
    results = tmp_path / "results"
    log = tmp_path / "bench.log"
    rng = random.Random(20240611)
    kills = []
    for _ in range(8):
        after = rng.uniform(0.05, 0.35) * DURATION["reference"]
        code = forked_bench(run_args(study_file, results), log=log, kill_after=after)
        assert code in (-9, 0), log.read_text()[-3000:]
        kills.append((round(after, 2), code))
        if code == 0:
            break
    assert sum(code == -9 for _, code in kills) >= 1, kills
    assert forked_bench(run_args(study_file, results), log=log) == 0, log.read_text()[-3000:]
    assert_same_as_reference(results / "kill", reference, f"sqlite:///{results}/bench.db")
