"""`bench run` end to end at smoke scale: records, Optuna trials, resume without duplicates."""

from __future__ import annotations

import textwrap
from pathlib import Path

import optuna
import pandas as pd
import pytest

from bench.cli import main
from bench.runner import critical_path_order
from bench.study import load_study

REPO = Path(__file__).resolve().parents[1]

STUDY = """
    description: tiny study for the runner tests
    base:
      data: {source: synthetic-faces}
      train: {epochs_per_subset: 2}
      eval: {every_epochs: 1, metrics: [kid, l1, psnr, ssim], n_samples: 6}
    sweep:
      zip: {train.subsets: [1, 2]}
    seeds: [0]
    baseline: {train.subsets: 1}
"""


@pytest.fixture
def study_file(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(textwrap.dedent(STUDY))
    return path


def _run(study_file, results, *extra):
    return main(["run", str(study_file), "--scale", "smoke", "--results", str(results), "--no-report", *extra])


def test_smoke_study_runs_end_to_end_with_expected_records(study_file, tmp_path):
    results = tmp_path / "results"
    assert _run(study_file, results) == 0
    trials = pd.read_csv(results / "tiny" / "trials.csv")
    assert len(trials) == 2 and set(trials["state"]) == {"complete"}
    assert sorted(trials["param:train.subsets"]) == [1, 2]
    # Algorithm 2: N = 2 subsets x E = 2 epochs is 4 epochs over halves: as many images as 2 full epochs
    by_n = trials.set_index("param:train.subsets")
    assert by_n.loc[2, "epochs"] == 4 and by_n.loc[1, "epochs"] == 2
    assert by_n.loc[2, "images_seen"] == by_n.loc[1, "images_seen"]
    base = trials[trials["is_baseline"]].iloc[0]
    inc = trials[~trials["is_baseline"]].iloc[0]
    assert set(trials["speedup_clock"]) == {"cpu"}  # on the CPU: the ratio of process CPU hours
    assert inc["speedup"] == pytest.approx(base["cpu_hours"] / inc["cpu_hours"])
    records = pd.read_csv(results / "tiny" / "records.csv")
    # one row per trial, stage, epoch and metric: 2 trials x 2 epochs x (3 training + 5 eval metrics)
    per_epoch = records.groupby(["trial", "epoch"])["metric"].apply(set)
    assert all({"loss", "epoch_seconds", "kid", "l1", "psnr"} <= m for m in per_epoch)
    assert not records.duplicated(["trial", "stage", "epoch", "metric"]).any()
    study = optuna.load_study(study_name="tiny/main", storage=f"sqlite:///{results}/bench.db")
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 2
    # the quality metric at every evaluation epoch
    assert sorted(len(t.intermediate_values) for t in done) == [2, 4]
    assert all(t.user_attrs["images_seen"] > 0 and "time_per_epoch_min" in t.user_attrs for t in done)
    # one Optuna parameter per swept axis, under its own name, plus the seed
    assert sorted(t.params["train.subsets"] for t in done) == [1, 2] and {t.params["seed"] for t in done} == {0}
    assert done[0].distributions["train.subsets"] == optuna.distributions.IntDistribution(1, 2)
    assert main(["status", str(study_file), "--scale", "smoke", "--results", str(results), "--check"]) == 0
    assert (results / "tiny" / "trials" / inc["trial"] / "config.json").exists()


def test_rerun_skips_finished_trials_and_resumes_the_rest(study_file, tmp_path):
    results = tmp_path / "results"
    assert _run(study_file, results, "--trials", "1") == 0
    first = pd.read_csv(results / "tiny" / "trials.csv")
    assert len(first) == 1
    assert _run(study_file, results) == 0
    assert _run(study_file, results) == 0  # a third call finds nothing to do
    trials = pd.read_csv(results / "tiny" / "trials.csv")
    assert len(trials) == 2
    records = pd.read_csv(results / "tiny" / "records.csv")
    assert not records.duplicated(["trial", "stage", "epoch", "metric"]).any()
    study = optuna.load_study(study_name="tiny/main", storage=f"sqlite:///{results}/bench.db")
    assert len(study.trials) == 2


def test_a_new_value_on_a_categorical_axis_continues_in_a_new_optuna_study(tmp_path):
    # Optuna fixes a categorical axis's choices per study; the finished trials are neither retrained nor lost
    path = tmp_path / "tiny.yaml"
    text = textwrap.dedent(STUDY).replace("zip: {train.subsets: [1, 2]}",
                                          "zip: {diffusion.loss_weighting: [none, min_snr]}")
    path.write_text(text.replace("baseline: {train.subsets: 1}", "baseline: {diffusion.loss_weighting: none}"))
    results = tmp_path / "results"
    assert _run(path, results) == 0
    before = {p: p.stat().st_mtime_ns for p in (results / "tiny" / "trials").glob("*/trial.json")}
    path.write_text(path.read_text().replace("[none, min_snr]", "[none, min_snr, p2]"))
    assert _run(path, results) == 0
    trials = pd.read_csv(results / "tiny" / "trials.csv")
    assert sorted(trials["param:diffusion.loss_weighting"]) == ["min_snr", "none", "p2"]
    assert set(trials["state"]) == {"complete"}
    assert {p: p.stat().st_mtime_ns for p in before} == before  # the two finished trials were not run again
    url = f"sqlite:///{results}/bench.db"
    old = optuna.load_study(study_name="tiny/main", storage=url).trials
    new = optuna.load_study(study_name="tiny/main~2", storage=url).trials
    assert len(old) == 2 and len(new) == 3 and all(t.state == optuna.trial.TrialState.COMPLETE for t in new)
    assert new[0].distributions["diffusion.loss_weighting"].choices == ("none", "min_snr", "p2")
    assert _run(path, results) == 0  # a third call finds the study it continued in
    assert len(optuna.load_study(study_name="tiny/main~2", storage=url).trials) == 3


def test_session_budget_pauses_and_the_next_call_resumes(study_file, tmp_path):
    results = tmp_path / "results"
    assert _run(study_file, results, "--session-budget", "1ep") == 0
    assert len(pd.read_csv(results / "tiny" / "trials.csv")) == 0
    assert _run(study_file, results) == 0
    trials = pd.read_csv(results / "tiny" / "trials.csv")
    assert list(trials["state"]) == ["complete", "complete"]
    assert sorted(trials["epochs"]) == [2, 4]


def test_a_failing_trial_does_not_stop_the_study(study_file, tmp_path, capsys):
    text = textwrap.dedent(STUDY).replace("zip: {train.subsets: [1, 2]}", "zip: {train.lr: [1.0e+30, 1.0e-4]}")
    text = text.replace("baseline: {train.subsets: 1}", "baseline: {train.lr: 1.0e-4}")
    study_file.write_text(text)
    results = tmp_path / "results"
    argv = [str(study_file), "--scale", "smoke", "--results", str(results)]
    assert main(["status", *argv, "--check"]) == 1  # nothing run yet
    assert "2 of 2 trials not finished (pending)" in capsys.readouterr().out.strip().splitlines()[-1]
    assert main(["run", *argv]) == 1  # exit status 1: a trial failed, after the others ran and the report
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("1 of 2 trials failed (lr=1e+30 seed 0): reasons in ") and "--retry-failed" in last
    assert "## Failed trials" in (results / "tiny" / "report.md").read_text()
    assert main(["status", *argv, "--check"]) == 1
    assert main(["status", *argv]) == 0  # without --check: a table, whatever the states
    trials = pd.read_csv(results / "tiny" / "trials.csv").set_index("param:train.lr")
    assert trials.loc[1e30, "state"] == "failed"
    assert "loss became" in trials.loc[1e30, "reason"]
    assert trials.loc[1e-4, "state"] == "complete"


def test_a_results_folder_of_another_configuration_is_refused(study_file, tmp_path, capsys):
    # Trial folders are named by point and seed: another --set (or --scale) must not find them "done".
    results = tmp_path / "results"
    assert _run(study_file, results, "--trials", "1") == 0
    capsys.readouterr()
    before = {p: p.read_bytes() for p in (results / "tiny").rglob("*") if p.is_file()}
    assert _run(study_file, results, "--set", "train.lr=0.5") == 2
    assert main(["status", str(study_file), "--scale", "smoke", "--results", str(results),
                 "--set", "train.lr=0.5"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and all("ran another configuration of this study" in line for line in lines)
    assert {p: p.read_bytes() for p in (results / "tiny").rglob("*") if p.is_file()} == before
    assert _run(study_file, results) == 0  # the same configuration resumes as before


@pytest.mark.parametrize("scale", ["smoke", "cpu"])
def test_the_paper_study_runs_its_critical_path_first(scale):
    # The transfer chain face_inpaint (N = 4, E = 160) -> face_color -> land_color decides the study's wall time
    # with several workers: its first two runs go first, the rest keep grid order.
    study = load_study(REPO / "ablations" / "paper.yaml", scale)
    (base,) = [t for t in study.trials if t.run.stage == "face_inpaint" and t.point["train.subsets"] == 4
               and t.point["train.epochs_per_subset"] == 160]
    (transfer,) = [t for t in study.trials if t.run.stage == "face_color" and t.run.transfer_source == "face_inpaint"]
    (land,) = [t for t in study.trials if t.run.stage == "land_color" and t.run.transfer_source == "face_color"]
    assert [r.key for r in land.run.chain()] == [base.run.key, transfer.run.key, land.run.key], \
        "the landscape transfer no longer starts from the face_color transfer trial's run (another run key)"
    order = [t.key for t in critical_path_order(study.trials)]
    rest = [t.key for t in study.trials if t.key not in (base.key, transfer.key)]
    assert order == [base.key, transfer.key, *rest]


# paper.yaml's trials by (stage, transfer_source, N, E), and each one's seconds measured at the cpu scale with
# two one-thread workers
PAPER_SECONDS = {("face_inpaint", "scratch", 1, 160): 314, ("face_inpaint", "scratch", 4, 40): 111,
                 ("face_inpaint", "scratch", 4, 160): 336, ("face_color", "scratch", 1, 160): 314,
                 ("face_color", "face_inpaint", 1, 160): 345, ("land_color", "scratch", 1, 20): 304,
                 ("land_color", "face_color", 1, 20): 334}


def _name(trial) -> tuple:
    return (trial.run.stage, trial.run.transfer_source, trial.point["train.subsets"],
            trial.point["train.epochs_per_subset"])


@pytest.fixture(scope="module")
def paper_cpu(tmp_path_factory):
    """paper.yaml at the cpu scale and its data sizes from the preflight (78 training faces, 591 crops)."""
    from bench.preflight import preflight

    study = load_study(REPO / "ablations" / "paper.yaml", "cpu")
    return study, preflight(study, tmp_path_factory.mktemp("results"))


def test_with_data_sizes_the_chain_goes_first_then_the_longest_trials(paper_cpu):
    # Levels in forward passes (bench/cost.py): the chain's three runs, then the independent trials by their
    # own cost, N = 4, E = 40 (a quarter of the images) last; the two 24.9k trials tie and keep grid order.
    study, sizes = paper_cpu
    assert sizes == {"faces:built-in@32": (78, 20), "landscapes:built-in@32": (591, 66)}
    assert [_name(t) for t in critical_path_order(study.trials, sizes)] == [
        ("face_inpaint", "scratch", 4, 160), ("face_color", "face_inpaint", 1, 160),
        ("land_color", "face_color", 1, 20), ("face_inpaint", "scratch", 1, 160),
        ("face_color", "scratch", 1, 160), ("land_color", "scratch", 1, 20), ("face_inpaint", "scratch", 4, 40)]
    # a data set the sizes do not hold: the order counts runs, as without sizes
    assert critical_path_order(study.trials, {"faces:built-in@32": (78, 20)}) == critical_path_order(study.trials)


def _makespan(order: list, upstream: dict) -> float:
    """Two workers replaying PAPER_SECONDS as _one_pass takes trials: the worker free first takes the first
    remaining trial whose upstream trial has finished, else the first one, after waiting for its upstream."""
    free, end, remaining = [0.0, 0.0], {}, list(order)
    while remaining:
        w = free.index(min(free))
        ready = [t for t in remaining if upstream.get(t) is None or end.get(upstream[t], float("inf")) <= free[w]]
        t = (ready or remaining)[0]
        remaining.remove(t)
        start = max(free[w], end[upstream[t]]) if upstream.get(t) else free[w]  # its upstream has started
        free[w] = end[t] = start + PAPER_SECONDS[t]
    return max(end.values())


def test_longest_first_evens_out_the_workers_ends(paper_cpu):
    study, sizes = paper_cpu
    by_run = {t.run.key: _name(t) for t in study.trials}
    upstream = {_name(t): by_run[t.run.upstream.key] for t in study.trials if t.run.upstream is not None}
    weighed = _makespan([_name(t) for t in critical_path_order(study.trials, sizes)], upstream)
    by_runs = _makespan([_name(t) for t in critical_path_order(study.trials)], upstream)
    grid = _makespan([_name(t) for t in study.trials], upstream)
    assert weighed <= 1050 < by_runs < grid, (weighed, by_runs, grid)


@pytest.mark.parametrize("name", ["dropout", "timesteps"])
def test_a_study_without_transfers_keeps_grid_order(name):
    study = load_study(REPO / "ablations" / f"{name}.yaml", "smoke")
    assert len(study.trials) > 1
    assert [t.key for t in critical_path_order(study.trials)] == [t.key for t in study.trials]


def test_no_train_publishes_what_is_finished_and_trains_nothing(study_file, tmp_path):
    # `bench run --no-train`: the records and study.json of the finished trials (here: one of two), nothing
    # trained, nothing claimed for later; another seed's call adds its seed to study.json without training it.
    results = tmp_path / "results"
    assert _run(study_file, results, "--trials", "1") == 0
    runs = {p.name for p in (results / "tiny" / "runs").iterdir() if p.is_dir()}
    (results / "tiny" / "study.json").unlink()
    (results / "tiny" / "records.csv").unlink()
    assert main(["run", str(study_file), "--scale", "smoke", "--results", str(results), "--no-train",
                 "--seeds", "0,1"]) == 0
    assert {p.name for p in (results / "tiny" / "runs").iterdir() if p.is_dir()} == runs  # nothing trained
    trials = pd.read_csv(results / "tiny" / "trials.csv")
    assert list(trials["state"]) == ["complete"]  # the unfinished trials have no row until they run
    assert (results / "tiny" / "records.csv").exists() and (results / "tiny" / "report.md").exists()
    assert '"seeds_override": [\n    0,\n    1\n  ]' in (results / "tiny" / "study.json").read_text()


def test_the_runner_imports_neither_the_figures_nor_torchvision():
    """`bench status`, `list` and the workers load bench.runner; the FID network (pytorch-fid -> torchvision,
    ~1.3 s) and the report's figures (matplotlib, seaborn, ~1 s) load only where they are used."""
    import subprocess
    import sys

    code = ("import sys, bench.runner, bench.records, model.evaluate; "
            "print(sorted(m for m in ('torchvision', 'pytorch_fid', 'seaborn', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    code = "import sys; from bench.report import write_report; print('seaborn' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() \
        == "True"  # the lazy name still resolves to the real function


def test_progress_writes_a_line_per_trial_where_no_terminal_shows_the_bars(capsys):
    """Output to a log file (the quick start's second worker, a batch job): rich draws its bars only at the end,
    so each trial's start and end is a plain line with the time."""
    import re
    from types import SimpleNamespace

    from bench.progress import StudyProgress

    a, b = SimpleNamespace(label="stage=x,n=1", seed=0), SimpleNamespace(label="stage=x,n=2", seed=1)
    with StudyProgress(3, "study") as progress:
        assert progress.plain  # pytest captures stderr: not a terminal
        progress.trial_skipped(a)
        progress.trial_started(b)
        progress.trial_finished(b, "complete")
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "stage=x,n=2" in ln]
    assert re.fullmatch(r"\d\d:\d\d:\d\d started stage=x,n=2 seed=1", lines[0])
    assert re.fullmatch(r"\d\d:\d\d:\d\d complete stage=x,n=2 seed=1 in \d+ s", lines[1])
