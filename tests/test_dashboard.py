"""A smoke study as researchers watch it: optuna-dashboard's own server (its WSGI app on a loopback port) shows
one Optuna study per stage and one parameter per swept axis, with the values each trial ran."""

from __future__ import annotations

import json
import textwrap
import threading
import urllib.request
from contextlib import contextmanager
from wsgiref.simple_server import WSGIRequestHandler, make_server

import optuna
import pandas as pd
import pytest
from optuna_dashboard import wsgi

from bench.cli import main
from bench.runner import make_storage

pytestmark = pytest.mark.slow

# Two stages that differ in task; axes of every kind: a stage, a transfer source (strings), an integer, and
# `null` beside a number (categorical).
STUDY = """
    name: dash
    description: two stages for the dashboard test
    base:
      data: {source: synthetic-faces, max_images: 16}
      eval: {every_epochs: 1, metrics: [kid, l1]}
    stages:
      inpaint: {task.name: inpainting}
      color: {task.name: colorization, transfer_source: inpaint}
    sweep:
      zip:
        stage:                    [inpaint, inpaint, color, color]
        transfer_source:          [scratch, scratch, scratch, inpaint]
        train.subsets:            [1, 2, 1, 1]
        diffusion.match_terminal: [null, 200, null, null]
        eval.every_epochs:        [1, 2, 1, 1]
    seeds: [0]
    baseline: {transfer_source: scratch}
"""
# eval.every_epochs follows from the others (bench/study.py's sweep.follows default): no parameter
AXES = {"stage", "transfer_source", "train.subsets", "diffusion.match_terminal", "seed"}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """The study run once at smoke scale: (study file, results folder, storage URL)."""
    tmp = tmp_path_factory.mktemp("dash")
    path = tmp / "dash.yaml"
    path.write_text(textwrap.dedent(STUDY))
    results = tmp / "results"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PALETTE_BENCH_CACHE", str(tmp / "cache"))
        assert main(["run", str(path), "--scale", "smoke", "--results", str(results), "--no-report"]) == 0
    return path, results, f"sqlite:///{results}/bench.db"


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args):  # no access log on stderr
        pass


@contextmanager
def dashboard(storage_url: str):
    """optuna-dashboard's WSGI app served by wsgiref on 127.0.0.1, a free port; yields a GET -> JSON function."""
    server = make_server("127.0.0.1", 0, wsgi(make_storage(storage_url)), handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        def get(route: str):
            with urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}{route}", timeout=60) as r:
                return json.loads(r.read())

        yield get
    finally:
        server.shutdown()
        server.server_close()


def _params(trial: dict) -> dict:
    return {p["name"]: p["param_external_value"] for p in trial["params"]}


def test_the_dashboard_shows_one_study_per_stage_and_one_parameter_per_axis(finished):
    _, results, url = finished
    trials = pd.read_csv(results / "dash" / "trials.csv")
    expected = {}  # (stage, trial key) -> the axes' values as the dashboard prints them (str of the value)
    for _, t in trials.iterrows():
        point = json.loads((results / "dash" / "trials" / t["trial"] / "trial.json").read_text())["point"]
        expected[(t["stage"], t["trial"])] = {**{k: str(v) for k, v in point.items() if k != "eval.every_epochs"},
                                              "seed": str(t["seed"])}
    with dashboard(url) as get:
        studies = {s["study_name"]: s["study_id"] for s in get("/api/studies")["study_summaries"]}
        assert set(studies) == {"dash/inpaint", "dash/color"}
        seen = {}
        for stage in ("inpaint", "color"):
            detail = get(f"/api/studies/{studies[f'dash/{stage}']}")
            assert detail["user_attrs"] and {a["key"]: a["value"] for a in detail["user_attrs"]}["stage"] == stage
            for trial in detail["trials"]:
                assert trial["state"] == "Complete"
                key = next(a["value"] for a in trial["user_attrs"] if a["key"] == "key")
                assert set(_params(trial)) == AXES
                seen[(stage, key)] = _params(trial)
            kinds = {s["name"]: s["distribution"]["type"] for s in detail["union_search_space"]}
            assert kinds["train.subsets"] == "IntDistribution" and kinds["seed"] == "IntDistribution"
            assert kinds["transfer_source"] == kinds["diffusion.match_terminal"] == "CategoricalDistribution"
            assert detail["has_intermediate_values"]  # the quality metric at each evaluated epoch
            assert detail["objective_names"] == ["KID"]  # not "Objective 0"; the raw KID, as stored
            assert "eval.every_epochs" not in kinds
        importance = {stage: {i["name"]: i["importance"] for i in get(
            f"/api/studies/{studies[f'dash/{stage}']}/param_importances")["param_importances"][0]}
            for stage in ("inpaint", "color")}
    assert seen == expected
    assert expected[("inpaint", trials[trials["param:train.subsets"] == 2]["trial"].iloc[0])][
        "diffusion.match_terminal"] == "200"
    # importance per axis: only the axes that vary within a stage carry any
    assert set(importance["inpaint"]) == set(importance["color"]) == AXES
    assert {k for k, v in importance["inpaint"].items() if v > 0} == {"train.subsets", "diffusion.match_terminal"}
    assert {k for k, v in importance["color"].items() if v > 0} == {"transfer_source"}


def test_another_storage_is_filled_from_the_finished_trials(finished, tmp_path, capsys):
    """`bench run` against a storage that has never seen the study (or holds it in the old one-`point` format)
    trains nothing and adds every finished trial with its parameters; the old study is left as it was."""
    path, results, url = finished
    other = f"sqlite:///{tmp_path / 'other.db'}"
    old = optuna.create_study(study_name="dash", storage=make_storage(other))
    old.set_user_attr("axes", ["stage"])
    point = optuna.distributions.CategoricalDistribution(["a"])
    old.add_trial(optuna.trial.create_trial(params={"point": "a"}, value=1.0, distributions={"point": point}))
    argv = [str(path), "--scale", "smoke", "--results", str(results), "--no-report", "--storage", other]
    assert main(["run", *argv]) == 0
    assert main(["run", *argv]) == 0  # a second call adds nothing
    store = make_storage(other)
    for stage, n in (("inpaint", 2), ("color", 2)):
        mine = {t.user_attrs["key"]: t for t in optuna.load_study(study_name=f"dash/{stage}", storage=url).trials}
        theirs = optuna.load_study(study_name=f"dash/{stage}", storage=store).trials
        assert len(theirs) == n and all(t.state == optuna.trial.TrialState.COMPLETE for t in theirs)
        for t in theirs:
            ref = mine[t.user_attrs["key"]]
            assert t.params == ref.params and t.distributions == ref.distributions
            assert t.value == pytest.approx(ref.value)
            assert t.intermediate_values == pytest.approx(ref.intermediate_values)
    assert [t.params for t in optuna.load_study(study_name="dash", storage=store).trials] == [{"point": "a"}]
    capsys.readouterr()
    assert main(["list", "--storage", other]) == 0
    listing = " ".join(capsys.readouterr().out.split())
    assert "dash/inpaint" in listing and "dash/color" in listing and "old: one `point` parameter" in listing
