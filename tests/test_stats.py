"""Verdicts with their uncertainty (bench/report/stats.py, verdicts.py, findings.py) on synthetic tables whose
answer is known, the contention mark, and the bootstrap standard errors of one evaluation
(model/metrics/bootstrap.py) against the metrics they resample."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bench.report import gate, stats, verdicts
from bench.report.findings import findings
from bench.report.tables import StudyData
from model.metrics.bootstrap import feature_metrics, standard_errors
from model.metrics.fid import fid_from_features
from model.metrics.kid import mmd2_unbiased


def _by_seed(values) -> pd.Series:
    return pd.Series(values, index=range(len(values)), dtype=float)


def test_identical_configs_hold_zero_and_give_no_verdict():
    b = _by_seed([0.020, 0.025, 0.018, 0.022])
    p = stats.paired(b, b, "kid")
    assert p.n == 4 and p.diff == 0 and p.lo <= 0 <= p.hi
    assert p.verdict == "no difference resolved with 4 seeds"
    # noise on both sides that does not move the mean: the interval still holds 0
    p = stats.paired(b + [0.001, -0.001, 0.001, -0.001], b, "kid")
    assert p.lo < 0 < p.hi and p.verdict.startswith("no difference resolved")


def test_a_2x_difference_with_small_noise_is_resolved_in_the_metrics_direction():
    b = _by_seed([0.020, 0.025, 0.018])
    x = b * 2 + [0.0005, -0.0003, 0.0002]
    assert stats.paired(b, x, "kid").verdict == "better"  # KID: lower is better
    assert stats.paired(x, b, "kid").verdict == "worse"
    assert stats.paired(x, b, "psnr").verdict == "better"  # PSNR: higher is better
    p = stats.paired(x, b, "kid")
    assert p.ratio == pytest.approx(2.0, rel=0.02) and p.ratio_lo < 2.0 < p.ratio_hi


def test_one_seed_gives_the_numbers_and_no_verdict_word():
    p = stats.paired(_by_seed([0.04]), _by_seed([0.02]), "kid")
    assert p.n == 1 and p.diff == pytest.approx(0.02) and math.isnan(p.lo)
    assert p.verdict == ""
    text = stats.sentence(p, "KID")
    assert "better" not in text and "worse" not in text and "resolved" not in text and "no verdict" in text


def test_pairs_are_matched_by_seed_and_unmatched_seeds_left_out():
    x = pd.Series([1.0, 2.0, 3.0], index=[0, 1, 5])
    b = pd.Series([0.5, 1.5, 9.0], index=[0, 1, 2])
    p = stats.paired(x, b, "l1")
    assert p.n == 2 and p.diff == pytest.approx(0.5)


def test_interval_is_the_t_interval_and_seeds_needed_resolves_it():
    d = np.array([0.3, -0.1, 0.5, 0.1])
    mean, sd, lo, hi, n = stats.t_interval(d)
    h = 3.182446305284263 * d.std(ddof=1) / 2  # t_{0.975, 3}
    assert (mean, n) == (pytest.approx(0.2), 4) and (lo, hi) == (pytest.approx(0.2 - h), pytest.approx(0.2 + h))
    need = stats.seeds_needed(mean, sd)
    assert need > n and stats.t_quantile(need) * sd / math.sqrt(need) < mean
    assert stats.t_quantile(need - 1) * sd / math.sqrt(need - 1) >= mean
    assert stats.seeds_needed(0.0, sd) is None


def test_costs_are_judged_on_the_ratio():
    # a loaded machine scales one seed's times by 2: the difference's interval holds 0, the ratio's does not
    b = _by_seed([2.0, 1.0, 1.0])
    x = b * 0.3
    p = stats.paired(x, b, "hours")
    assert p.lo < 0 < p.hi and p.on_ratio and p.verdict == "better"


def test_contention_mark_on_synthetic_wall_and_cpu_times():
    cpu = pd.Series([100.0, 100.0, 100.0, 100.0, 100.0])
    wall = pd.Series([52.0, 50.0, 55.0, 49.0, 90.0])  # 2 threads: wall ~ cpu / 2; the last ran beside others
    marks = stats.contended(wall, cpu)
    assert list(marks) == [False, False, False, False, True]
    assert stats.contended(pd.Series([50.0, None]), pd.Series([100.0, 100.0])).iloc[1] is None


# ---------------------------------------------------------------- verdicts and findings on a study table
def _study(tmp_path, kids: dict[str, list[float]], hours: dict[str, list[float]] | None = None,
           contended: dict[str, list[bool]] | None = None) -> StudyData:
    rows = []
    for i, (label, values) in enumerate(kids.items()):
        for seed, kid in enumerate(values):
            rows.append({"trial": f"t{i}{seed}", "label": label, "seed": seed, "stage": "main",
                         "transfer_source": "scratch", "is_baseline": i == 0, "state": "complete",
                         "kid": kid, "total_hours": (hours or {}).get(label, [1.0] * len(values))[seed],
                         "contended": (contended or {}).get(label, [False] * len(values))[seed],
                         "param:x": label, **gate.gate({"gray_copy": {"kid": 0.5}}, {"kid": kid}, "kid")})
    trials = pd.DataFrame(rows)
    trials["learned"] = trials["learned"].astype(str)
    meta = {"quality_metric": "kid", "axes": ["x"], "baseline": {"x": next(iter(kids))}}
    return StudyData(tmp_path, meta, trials, pd.DataFrame(), pd.DataFrame())


def test_findings_state_only_resolved_differences(tmp_path):
    data = _study(tmp_path, {"base": [0.020, 0.025, 0.018], "half": [0.010, 0.0126, 0.0091],
                             "same": [0.0201, 0.0249, 0.0181]})
    text = findings(data)
    assert any(s.startswith("`half` against the baseline: KID×10³") and s.endswith(": better.") for s in text)
    assert not any(s.startswith("`same` against") for s in text)
    unresolved = [s for s in text if s.startswith("no difference resolved with 3 seeds")]
    assert len(unresolved) == 1 and "`same` on KID×10³" in unresolved[0] and "seeds would resolve" in unresolved[0]
    assert not any("fastest" in s for s in text)


def test_one_seed_findings_have_no_verdict_word(tmp_path):
    text = findings(_study(tmp_path, {"base": [0.020], "half": [0.010]}))
    assert not any(w in s for s in text for w in ("better", "worse", "resolved"))
    assert any("one seed per config: no verdicts" in s for s in text)


def test_no_time_verdict_rests_on_contended_trials(tmp_path):
    hours = {"base": [1.0, 1.0, 1.0], "fast": [0.5, 0.5, 0.5]}
    data = _study(tmp_path, {"base": [0.02] * 3, "fast": [0.02] * 3}, hours, {"fast": [True, True, True]})
    rows = verdicts.baseline_comparisons(data)
    time_row = rows[rows["measure"] == "hours"].iloc[0]
    assert time_row["verdict"] == "" and "contention" in time_row["why"]
    data = _study(tmp_path, {"base": [0.02] * 3, "fast": [0.02] * 3}, hours, {"fast": [True, False, False]})
    rows = verdicts.baseline_comparisons(data)
    assert rows[rows["measure"] == "hours"].iloc[0]["n"] == 2  # the contended seed is left out


def test_no_quality_verdict_from_an_unlearned_config(tmp_path):
    data = _study(tmp_path, {"base": [0.020, 0.025, 0.018], "bad": [0.9, 0.8, 0.95]})
    rows = verdicts.baseline_comparisons(data)
    q = rows[rows["measure"] == "kid"].iloc[0]
    assert q["verdict"] == "" and "did not learn" in q["why"]
    assert not any(s.startswith("`bad` against") for s in findings(data))


def test_psnr_is_judged_beside_the_quality_metric_higher_being_better(tmp_path):
    # a config better on KID and worse on single-sample PSNR (the cpu preset's trade): both verdicts are stated
    data = _study(tmp_path, {"base": [0.020, 0.025, 0.018], "sharp": [0.010, 0.0126, 0.0091]})
    data.trials["psnr"] = [25.0, 25.2, 24.9, 24.1, 24.4, 24.0]  # base's seeds 0-2, then sharp's
    rows = verdicts.baseline_comparisons(data)
    assert list(rows["measure"]) == ["kid", "psnr", "hours"]
    kid, psnr = rows.iloc[0], rows.iloc[1]
    assert kid["verdict"] == "better" and psnr["verdict"] == "worse"  # lower KID is better, lower PSNR worse
    assert psnr["diff"] == pytest.approx(np.mean([24.1 - 25.0, 24.4 - 25.2, 24.0 - 24.9]))
    text = findings(data)
    assert any(s.startswith("`sharp` against the baseline: PSNR (dB)") and s.endswith(": worse.") for s in text)
    # a study without PSNR (or whose quality metric is PSNR) has no second row
    assert list(verdicts.baseline_comparisons(_study(tmp_path, {"a": [0.02] * 2, "b": [0.01] * 2}))["measure"]) == \
        ["kid", "hours"]
    data.meta["quality_metric"] = "psnr"
    assert list(verdicts.baseline_comparisons(data)["measure"]) == ["psnr", "hours"]


# ---------------------------------------------------------------- bootstrap standard errors of one evaluation
def test_bootstrap_metrics_equal_fid_and_kid_on_the_identity_resample():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(40, 64)), rng.normal(size=(40, 64)) + 0.2
    got = feature_metrics(a, b)
    assert got["fid"][0] == pytest.approx(fid_from_features(a, b), rel=1e-9)
    assert got["kid"][0] == pytest.approx(mmd2_unbiased(a, b), rel=1e-9)


def test_bootstrap_standard_errors_are_deterministic_and_shrink_with_n():
    rng = np.random.default_rng(1)
    small, large = rng.normal(size=30), rng.normal(size=480)
    se = standard_errors({"l1": small})
    assert se == standard_errors({"l1": small})  # fixed seed
    assert se["l1_se"] == pytest.approx(small.std(ddof=1) / math.sqrt(30), rel=0.25)  # the textbook sd / sqrt(n)
    assert standard_errors({"l1": large})["l1_se"] < se["l1_se"]
    feats = standard_errors({}, rng.normal(size=(30, 16)), rng.normal(size=(30, 16)), ("fid", "kid"))
    assert feats["fid_se"] > 0 and feats["kid_se"] > 0
