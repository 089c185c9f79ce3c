"""The shipped studies as Optuna sees them: one study per stage, one parameter per swept axis, each with a
distribution that holds every value the axis takes (no training: the studies are only expanded)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from bench import search_space
from bench.study import load_study

ABLATIONS = Path(__file__).parent.parent / "ablations"


def test_each_value_kind_gets_a_fitting_distribution():
    d = search_space.distribution
    assert d([2000, 1200, 500]) == IntDistribution(500, 2000)
    assert d([0.0, 0.1, 0.3]) == FloatDistribution(0.0, 0.3)
    assert d([1e-4, 1e-3, 1e-2]) == FloatDistribution(1e-4, 1e-2, log=True)  # two decades: a log axis
    assert d([None, None, 2000]) == CategoricalDistribution([None, 2000])  # null beside a number
    assert d(["scratch", "face_inpaint"]) == CategoricalDistribution(["scratch", "face_inpaint"])
    assert d([True, False]) == CategoricalDistribution([True, False])  # booleans are not integers here
    assert d([[1, 2], [1, 2, 2]]) == CategoricalDistribution(["[1, 2]", "[1, 2, 2]"])  # lists as JSON text


@pytest.mark.parametrize("name", sorted(p.stem for p in ABLATIONS.glob("*.yaml")))
def test_every_trial_of_a_shipped_study_fits_its_stage_space(name):
    study = load_study(ABLATIONS / f"{name}.yaml", "cpu")
    groups = search_space.trials_by_stage(study)
    assert sum(len(g) for g in groups.values()) == len(study.trials)
    for stage, trials in groups.items():
        space = search_space.search_space(trials)
        assert list(space) == study.axes + ["seed"]
        points = set()
        for t in trials:
            params = search_space.params(t, space)
            # create_trial checks that each value lies inside its distribution
            optuna.trial.create_trial(params=params, distributions=space, value=0.0)
            points.add(tuple(params.items()))
        assert len(points) == len(trials), f"{name}/{stage}: two trials share the same parameters"


def test_paper_stages_are_separate_studies_with_their_own_values():
    study = load_study(ABLATIONS / "paper.yaml", "cpu")
    spaces = {s: search_space.search_space(t) for s, t in search_space.trials_by_stage(study).items()}
    assert list(spaces) == ["face_inpaint", "face_color", "land_color"]
    assert spaces["face_inpaint"]["train.subsets"] == IntDistribution(1, 4)
    assert spaces["face_color"]["transfer_source"] == CategoricalDistribution(["scratch", "face_inpaint"])
    assert spaces["land_color"]["stage"] == CategoricalDistribution(["land_color"])
    assert search_space.optuna_study_name(study.name, "land_color") == "paper/land_color"
