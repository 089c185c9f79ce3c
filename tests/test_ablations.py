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
def test_study_validates_at_every_scale(path):
    for scale in ("smoke", "cpu"):
        study = load_study(path, scale)
        assert study.trials and all(t.run.config for t in study.trials)
    # the paper scale reads the researcher's own folders: without them it says which key to set
    with pytest.raises(ConfigError, match="data.path is required"):
        load_study(path, "paper")
    study = load_study(path, "paper", {"data.path": "/data/images"})
    assert all(r.config.data.image_size == 256 for t in study.trials for r in t.run.chain())
    cpu = load_study(path, "cpu")
    for a, b in zip(cpu.trials, study.trials, strict=True):  # the cpu epoch counts, times 1.25, rounded
        ta, tb = a.run.config.train, b.run.config.train
        assert tb.epochs_per_subset == max(1, round(EPOCH_MULTIPLIER["paper"] * ta.epochs_per_subset))
        assert tb.total_epochs == pytest.approx(EPOCH_MULTIPLIER["paper"] * ta.total_epochs, abs=ta.subsets)


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
