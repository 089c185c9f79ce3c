"""Every shipped study file validates at every scale and runs end to end at `--scale smoke`."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main
from bench.presets import EPOCH_MULTIPLIER
from bench.study import load_study
from model.errors import ConfigError

ABLATIONS = sorted((Path(__file__).parent.parent / "ablations").glob("*.yaml"))


def test_the_paper_studies_are_shipped():
    names = {p.stem for p in ABLATIONS}
    assert {"timesteps", "subsets", "epochs_per_subset", "dropout", "transfer", "paper"} <= names


@pytest.mark.parametrize("path", ABLATIONS, ids=lambda p: p.stem)
def test_study_validates_at_every_scale(path, monkeypatch):
    for scale in ("smoke", "cpu"):
        study = load_study(path, scale)
        assert study.trials and all(t.run.config for t in study.trials)
    # the paper scale reads the researcher's own folders: without them it says which key to set
    with pytest.raises(ConfigError, match="data.path is required"):
        load_study(path, "paper")
    study = load_study(path, "paper", {"data.path": "/data/images"})
    assert all(r.config.data.image_size == 256 for t in study.trials for r in t.run.chain())
    cpu = load_study(path, "cpu")
    with monkeypatch.context() as m:
        m.setitem(EPOCH_MULTIPLIER, "cpu", 1)
        written = load_study(path, "cpu")  # the epoch counts as the file writes them
    for w, a, b in zip(written.trials, cpu.trials, study.trials, strict=True):  # each scale's multiple, rounded
        tw, ta, tb = w.run.config.train, a.run.config.train, b.run.config.train
        assert tb.epochs_per_subset == max(1, round(EPOCH_MULTIPLIER["paper"] * tw.epochs_per_subset))
        assert tb.total_epochs == pytest.approx(EPOCH_MULTIPLIER["paper"] * tw.total_epochs, abs=tw.subsets)
        assert ta.epochs_per_subset in (tw.epochs_per_subset,  # written under scales.cpu: taken as written
                                        max(1, round(EPOCH_MULTIPLIER["cpu"] * tw.epochs_per_subset)))


def test_the_cpu_scale_trains_the_preset_budget_and_the_cost_study_keeps_the_one_it_measured():
    """The cpu preset draws log-normal noise levels and trains 0.6 of a file's epochs (what ablations/cost.yaml
    measured them to need); the studies that measured it keep their 160 epochs and noise levels, so their
    published results are what `bench run` reproduces; the paper preset stays Palette's uniform levels."""
    paper = {t.point["train.epochs_per_subset"]: t.run.config for t in load_study(ABLATIONS[0].parent / "paper.yaml",
                                                                                  "cpu").trials}
    assert paper[160].train.epochs_per_subset == 96 and paper[40].train.epochs_per_subset == 24
    assert {c.diffusion.noise_levels for c in paper.values()} == {"log_normal"}
    cost = load_study(ABLATIONS[0].parent / "cost.yaml", "cpu")
    assert {(t.run.config.train.epochs_per_subset, t.run.config.eval.every_epochs) for t in cost.trials} == {(160, 32)}
    assert {t.run.config.diffusion.noise_levels for t in cost.trials} == {"uniform", "log_normal", "laplace"}
    budget = load_study(ABLATIONS[0].parent / "cpu_budget.yaml", "cpu")
    assert {(t.run.config.train.epochs_per_subset, t.run.config.diffusion.noise_levels) for t in budget.trials} \
        == {(160, "uniform")}
    at_paper = load_study(ABLATIONS[0].parent / "timesteps.yaml", "paper", {"data.path": "/data/images"})
    assert {t.run.config.diffusion.noise_levels for t in at_paper.trials} == {"uniform"}


@pytest.mark.slow
@pytest.mark.parametrize("path", ABLATIONS, ids=lambda p: p.stem)
def test_study_runs_at_smoke_scale(path, tmp_path):
    results = tmp_path / "results"
    assert main(["run", str(path), "--scale", "smoke", "--results", str(results)]) == 0
    study = load_study(path, "smoke")
    trials = pd.read_csv(results / study.name / "trials.csv")
    assert len(trials) == len(study.trials)
    assert set(trials["state"]) == {"complete"}
    assert (results / study.name / "report.md").exists()
