"""The learned gate (bench/report/gate.py) on small synthetic trials tables: a trial learned only when it beats the
best trivial baseline of its task, and no verdict sentence is drawn from a comparison that involves one
that did not."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from bench.report import cost, gate, tables
from bench.report.findings import findings
from bench.report.tables import StudyData

GRAY_KID = 0.0754  # the faces gray copy's KID (FACTS.md), as the stage's only trivial baseline


def _study(tmp_path, kids: dict[str, list[float]], records: pd.DataFrame | None = None,
           transfer: dict[str, str] | None = None) -> StudyData:
    """A one-stage study: config label -> final KID per seed; the first label is the baseline."""
    rows = []
    for i, (label, values) in enumerate(kids.items()):
        for seed, kid in enumerate(values):
            final = {"kid": kid, "kid_std": math.nan}
            rows.append({"trial": f"t{i}{seed}", "label": label, "seed": seed, "stage": "color",
                         "transfer_source": (transfer or {}).get(label, "scratch"), "is_baseline": i == 0,
                         "state": "complete", "epochs": 10, "images_seen": 1000, "steps": 60,
                         "time_per_epoch_min": 2.0 / (i + 1), "total_hours": 0.4 / (i + 1),
                         "chain_hours": 0.4 / (i + 1), "n_samples": 100, f"param:{'x'}": label,
                         **final, **gate.gate({"gray_copy": {"kid": GRAY_KID}}, final, "kid")})
    trials = pd.DataFrame(rows)
    base = trials[trials["is_baseline"]]["total_hours"].mean()
    trials["speedup"] = base / trials["total_hours"]
    trials["speedup_per_epoch"] = 2.0 / trials["time_per_epoch_min"]
    trials["learned"] = trials["learned"].astype(str)  # as read back from trials.csv
    trivial = pd.DataFrame([{"stage": "color", "trivial": "gray_copy", "kid": GRAY_KID, "psnr": 20.7}])
    meta = {"quality_metric": "kid", "axes": ["x"], "baseline": {"x": next(iter(kids))}}
    return StudyData(tmp_path, meta, trials, records if records is not None else pd.DataFrame(), trivial)


def _findings(data: StudyData) -> list[str]:
    return findings(data)


def test_gate_compares_with_the_best_trivial_baseline_in_the_metrics_direction():
    scores = {"mean_fill": {"kid": 0.140, "psnr": 21.8}, "biharmonic": {"kid": 0.055, "psnr": 24.1}}
    assert gate.best_trivial(scores, "kid") == ("biharmonic", 0.055)
    g = gate.gate(scores, {"kid": 0.060}, "kid")
    assert g == {"trivial_best": "biharmonic", "trivial_kid": 0.055, "ratio_to_trivial": pytest.approx(0.06 / 0.055),
                 "learned": False}
    assert gate.gate(scores, {"kid": 0.050}, "kid")["learned"] is True
    assert gate.gate(scores, {"psnr": 25.0}, "psnr")["learned"] is True  # higher is better
    assert gate.gate(scores, {"psnr": 24.1}, "psnr")["learned"] is False  # a tie is not beating it
    assert gate.gate(scores, {"fid": 80.0}, "fid")["learned"] is None  # the baselines lack FID: unknown
    assert gate.gate({}, {"kid": 0.01}, "kid")["learned"] is None


def test_learned_trials_give_verdicts(tmp_path):
    data = _study(tmp_path, {"x=a": [0.050], "x=b": [0.040]})
    qual = tables.quality_table(data)[1]
    assert list(qual["Learned"][:2]) == ["yes", "yes"] and qual["Model"].iloc[-1] == "trivial: gray copy"
    assert qual["KID×10³"].iloc[-1] == "75.4" and qual["KID×10³ ÷ best trivial"].iloc[1] == "0.531"
    text = _findings(_study(tmp_path, {"x=a": [0.050, 0.052, 0.049], "x=b": [0.040, 0.0415, 0.039]}))
    assert any(s.startswith("`x=b` against the baseline: KID×10³ -10") and s.endswith(": better.")
               for s in text), text  # b vs the baseline a, three seeds: a verdict
    assert any(s.startswith("every config learned") for s in text), text
    assert not any("did not learn" in s or "no verdict" in s for s in text), text


def test_an_unlearned_trial_yields_no_verdict_sentence(tmp_path):
    data = _study(tmp_path, {"x=a": [0.050], "x=b": [0.090]})  # b is worse than copying the gray input
    assert list(tables.quality_table(data)[1]["Learned"][:2]) == ["yes", "no"]
    text = _findings(_study(tmp_path, {"x=a": [0.050, 0.051], "x=b": [0.090, 0.095]}))
    assert not any("`x=b` against the baseline: KID" in s or "`x=b` on KID" in s for s in text), text
    assert any("did not learn (final KID×10³ no better than the best trivial baseline, gray copy at KID×10³ "
               "75.4): `x=b`. No conclusion" in s for s in text), text
    line = gate.unlearned_line(data.trials, "kid")
    assert line.startswith("1 of 2 trials did not learn") and "x=b seed 0" in line
    assert gate.unlearned_line(_study(tmp_path, {"x=a": [0.05]}).trials, "kid") is None


def test_a_learned_config_is_not_compared_with_an_unlearned_baseline(tmp_path):
    data = _study(tmp_path, {"x=a": [0.100, 0.110], "x=b": [0.040, 0.090]})  # b learned on one seed of two
    assert list(tables.quality_table(data)[1]["Learned"][:2]) == ["no", "1/2 seeds"]
    ablation = tables.ablation_tables(data)[("color", "x")][1]
    assert list(ablation["Learned"]) == ["0/2", "1/2"]
    text = _findings(data)
    assert not any("KID×10³ -" in s or "KID×10³ +" in s for s in text), text  # no quality comparison at all
    assert any("`x=a (baseline)`, `x=b` (seed 1). No conclusion" in s for s in text), text


def test_cost_to_target_gives_no_verdict_for_an_unlearned_source(tmp_path):
    kids = {"scratch": [0.050], "from_inpaint": [0.090], "from_color": [0.030]}
    curves = {"t00": [0.20, 0.05], "t10": [0.09, 0.09], "t20": [0.04, 0.03]}  # from_inpaint "reaches" nothing
    records = pd.DataFrame([{"trial": k, "metric": "kid", "value": v, "epoch": e + 1, "train_hours": 0.1 * (e + 1),
                             "target_stage": True} for k, vs in curves.items() for e, v in enumerate(vs)])
    data = _study(tmp_path, kids, records, transfer={"from_inpaint": "inpaint", "from_color": "color_src"})
    raw, view = cost.table(data)
    reach = view.set_index(raw["label"])[(raw["target"] == "baseline").to_numpy()]
    assert reach.loc["from_color", "Seeds reached"] == "1/1" and reach.loc["from_color", "Epoch"] == "1"
    assert reach.loc["from_inpaint", "Seeds reached"] == "0/1 (did not learn: no verdict)"
    assert reach.loc["scratch", "Epoch"] == "2"
