"""Cost to reach a target (bench/report/cost.py) on synthetic histories: reached at the first evaluation, between
evaluations (counted at the first evaluation at or after it), never reached; the targets per stage (the
baseline's final quality, mean over seeds; the best trivial baseline) and trials.csv's columns."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from bench.report import cost


def _curve(values, every=10, batch=8, images_per_epoch=80) -> pd.DataFrame:
    epochs = [every * (i + 1) for i in range(len(values))]
    return pd.DataFrame({"epoch": epochs, "value": values, "images_seen": [e * images_per_epoch for e in epochs],
                         "steps": [e * images_per_epoch // batch for e in epochs],
                         "train_hours": [e * 0.01 for e in epochs], "train_cpu_hours": [e * 0.02 for e in epochs]})


def test_reached_at_the_first_evaluation():
    hit = cost.first_reach(_curve([0.01, 0.02, 0.005]), target=0.015, quality="kid")
    assert hit == {"epoch": 10, "images": 800, "steps": 100, "hours": pytest.approx(0.1),
                   "cpu_hours": pytest.approx(0.2)}


def test_reached_between_evaluations_counts_at_the_next_one():
    # the curve crosses 0.03 somewhere between epochs 20 and 30: the cost is that of epoch 30, not interpolated
    hit = cost.first_reach(_curve([0.09, 0.05, 0.02, 0.01]), target=0.03, quality="kid")
    assert hit["epoch"] == 30 and hit["images"] == 2400 and hit["steps"] == 300


def test_never_reached_is_nan_and_direction_follows_the_metric():
    assert all(math.isnan(v) for v in cost.first_reach(_curve([0.09, 0.05]), 0.03, "kid").values())
    # PSNR: higher is better; equal to the target (up to round-off) reaches it
    assert cost.first_reach(_curve([20.0, 24.0, 25.0]), 24.0 + 1e-12, "psnr")["epoch"] == 20
    assert all(math.isnan(v) for v in cost.first_reach(_curve([0.01]), math.nan, "kid").values())


def test_per_trial_columns_use_the_baseline_mean_and_the_best_trivial():
    trials = pd.DataFrame({
        "trial": ["b0", "b1", "x0", "x1"], "label": ["base", "base", "x", "x"], "seed": [0, 1, 0, 1],
        "stage": "main", "is_baseline": [True, True, False, False], "state": "complete",
        "kid": [0.020, 0.030, 0.012, 0.050]})  # the baseline's target: 0.025
    curves = {"b0": [0.06, 0.020], "b1": [0.07, 0.030], "x0": [0.024, 0.012], "x1": [0.08, 0.050]}
    records = pd.concat([_curve(v).assign(trial=k, metric="kid", target_stage=True) for k, v in curves.items()])
    trivial = pd.DataFrame({"stage": ["main", "main"], "trivial": ["mean_fill", "biharmonic"], "kid": [0.14, 0.055]})
    targets = cost.stage_targets(trials, trivial, "kid")["main"]
    assert targets["baseline"] == pytest.approx(0.025) and targets["trivial"] == 0.055
    assert targets["trivial_name"] == "biharmonic"
    got = cost.per_trial(trials, records, trivial, "kid")
    assert list(got["to_baseline_epoch"].fillna(-1)) == [20, -1, 10, -1]  # b1 ends above the mean, x1 never
    assert list(got["to_trivial_epoch"].fillna(-1)) == [20, 20, 10, 20]
    assert got.loc[2, "to_baseline_images"] == 800 and got.loc[2, "to_baseline_cpu_hours"] == pytest.approx(0.2)
    per = cost.per_config(trials.join(got), "baseline")
    assert list(per["reached"]) == [1, 1] and list(per["seeds"]) == [2, 2]


def test_a_cost_within_one_evaluation_step_gets_no_verdict():
    """Two seeds that reach a target one evaluation earlier than their baselines differ by exactly one grid step
    at each seed: the paired interval has zero width, yet the grid cannot resolve it, so no verdict word; two
    steps earlier at every seed with some spread is resolved."""
    from bench.report import verdicts

    def trials(name, seeds, images):
        return pd.DataFrame({"trial": [f"{name}{s}" for s in seeds], "pair": seeds, "seed": seeds,
                             "to_baseline_images": images, "learned": True})

    records = pd.concat([_curve([0.1] * 5).assign(trial=f"{n}{s}", metric="kid")
                         for n in ("x", "b") for s in (0, 1, 2)])  # evaluations every 800 images
    base = trials("b", [0, 1, 2], [4000, 4000, 4000])
    assert verdicts.grid_step(records, base, "to_baseline_images", "kid") == 800
    p, _, why = verdicts.compare(trials("x", [0, 1, 2], [3200, 3200, 3200]), base, "to_baseline_images",
                                 records, "kid")
    assert p.ratio == pytest.approx(0.8) and why.startswith("no verdict: the difference (-800) is within one step")
    p, _, why = verdicts.compare(trials("x", [0, 1, 2], [1600, 2400, 1600]), base, "to_baseline_images",
                                 records, "kid")
    assert why == "" and p.verdict == "better"
    assert math.isnan(verdicts.grid_step(records, base, "kid", "kid"))  # only costs to a target are on a grid
