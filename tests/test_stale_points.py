"""Issue 24: a study edited between two runs into one results folder. The points its file no longer asks for
stay on disk and in trials.csv (column `stale`), and are listed apart in the report; no table, finding or
figure draws from them unless `bench report --include-stale` asks; `bench status` counts them."""

from __future__ import annotations

import json

import pandas as pd
from _reliability import run_args, tiny_study

from bench import cli
from bench.report import tables

STALE_HEADING = "## Points no longer in the study file"


def dropout_study(path, values):
    return tiny_study(path, sweep={"grid": {"model.dropout": values}}, baseline={"model.dropout": 0.0})


def test_an_edited_study_reports_only_the_points_its_file_asks_for(tmp_path, capsys):
    results, file = tmp_path / "R", tmp_path / "study.yaml"
    assert cli.main(run_args(dropout_study(file, [0.0, 0.1, 0.3]), results)) == 0
    capsys.readouterr()
    # edited: 0.1 changed to 0.2 (a new point), 0.3 removed, 0.0 kept (not run again)
    assert cli.main(run_args(dropout_study(file, [0.0, 0.2]), results)) == 0
    out = capsys.readouterr().out
    assert "2 finished trial(s)" in out and "dropout=0.1" not in out  # bench run says so; its lines leave them out
    study_dir = results / "tiny"
    assert len(list((study_dir / "trials").glob("*/trial.json"))) == 4  # nothing deleted

    trials = pd.read_csv(study_dir / "trials.csv")
    assert dict(zip(trials["label"], trials["stale"].astype(bool), strict=True)) == {
        "dropout=0.0": False, "dropout=0.2": False, "dropout=0.1": True, "dropout=0.3": True}

    assert cli.main(["report", str(study_dir)]) == 0
    data = tables.load(study_dir)
    current = set(trials.loc[~trials["stale"].astype(bool), "trial"])
    assert set(data.trials["label"]) == {"dropout=0.0", "dropout=0.2"} and set(data.trials["trial"]) == current
    assert not data.records.empty and set(data.records["trial"]) == current  # what the figures plot
    assert sorted(data.stale["label"]) == ["dropout=0.1", "dropout=0.3"]
    text = (study_dir / "report.md").read_text()
    body, stale_part = text.split(STALE_HEADING)
    for label in ("dropout=0.1", "dropout=0.3"):
        assert label not in body and f"| {label} | 0 | main | complete |" in stale_part
    assert "dropout=0.2" in body and "Trials | 2 complete, 0 failed, 0 not run (of 2)" in body
    for csv in (study_dir / "report").glob("*.csv"):
        frame = pd.read_csv(csv)
        assert not frame.isin([0.1, 0.3, "dropout=0.1", "dropout=0.3"]).any().any(), csv.name

    assert cli.main(["report", str(study_dir), "--include-stale"]) == 0
    quality = pd.read_csv(study_dir / "report" / "report_quality.csv")
    assert {"dropout=0.1", "dropout=0.3"} <= set(quality["label"])
    assert "are **included**" in (study_dir / "report.md").read_text()

    capsys.readouterr()
    assert cli.main(["status", str(file), "--scale", "smoke", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert "2 finished trial(s)" in out and "stale" in out
    # against the first version of the file, the new point is the stale one
    assert cli.main(["status", str(dropout_study(file, [0.0, 0.1, 0.3])), "--scale", "smoke",
                     "--results", str(results)]) == 0
    assert "1 finished trial(s)" in capsys.readouterr().out


def test_a_folder_without_recorded_points_has_no_stale_trials(tmp_path):
    """Study folders written before study.json held `points` keep every trial in their report."""
    from bench import records

    (tmp_path / "study.json").write_text(json.dumps({"name": "old"}))
    assert records.stale_keys(tmp_path, ["t-1", "t-2"]) == []


def test_seeds_are_replications_never_stale(tmp_path):
    """Only a point the file no longer has is stale: another seed of a current point (an earlier `--seeds` call)
    stays in the study, so `--seeds 1` after `--seeds 0` never hides seed 0."""
    from bench import records

    points = {"t-a0": ({"model.dropout": 0.0}, 0), "t-a1": ({"model.dropout": 0.0}, 1),
              "t-b0": ({"model.dropout": 0.1}, 0)}
    for key, (point, seed) in points.items():
        (tmp_path / "trials" / key).mkdir(parents=True)
        (tmp_path / "trials" / key / "trial.json").write_text(json.dumps({"point": point, "seed": seed}))
    current = [records.point_id({"model.dropout": 0.0})]
    (tmp_path / "study.json").write_text(json.dumps({"name": "s", "points": current}))
    assert records.stale_keys(tmp_path, list(points)) == ["t-b0"]
    assert records.stale_keys(tmp_path, list(points), current=[records.point_id({"model.dropout": 0.1})]) == \
        ["t-a0", "t-a1"]
