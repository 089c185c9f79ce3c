"""`bench perf`'s speed-switch table: each variant's ratio to the default with the range of its rounds, so a
ratio within the machine's noise reads as such (Adam fused once showed x1.03 of a step it changes by 0.75%)."""

from __future__ import annotations

import pytest

from bench.perf import run as perf_run
from bench.perf.timing import Timing, round_ratios
from bench.perf.train import Contender


def _timing(name: str, cpu: list[float]) -> Timing:
    return Timing(name, items=16, cpu=cpu, wall=[2 * x for x in cpu])


def test_round_ratios_pair_the_rounds_on_the_clock_in_use():
    base, other = _timing("a", [1.0, 1.2, 0.9]), _timing("b", [0.5, 1.2, 1.8])
    assert round_ratios(base, other) == pytest.approx([2.0, 1.0, 0.5])
    base.use_cpu_time = other.use_cpu_time = False  # wall clock (several threads, CUDA): same ratios here
    assert round_ratios(base, other) == pytest.approx([2.0, 1.0, 0.5])


def test_the_ablation_table_shows_each_rounds_range(monkeypatch):
    rows = {"default": Contender("default", 1, 1, _timing("default", [1.0, 1.0, 1.1])),
            "noisy": Contender("noisy", 1, 1, _timing("noisy", [0.9, 1.05, 1.0])),
            "slow": Contender("slow", 1, 1, _timing("slow", [2.0, 2.1, 2.0]), note="a note")}
    monkeypatch.setattr(perf_run.perf_train, "ablations", lambda *a, **k: rows)
    csv: list = []
    md = "\n".join(perf_run._ablation_section(None, None, perf_run.Plan(rounds_ablation=3), csv, {}))
    lines = {line.split(" | ")[0].strip("| "): line for line in md.splitlines() if line.startswith("| ")}
    assert lines["noisy"] == "| noisy | 16.00 | x1.00 | [0.95, 1.11] |  |"  # median 1.0 vs 1.0; rounds 1.11 .. 0.95
    assert lines["slow"] == "| slow | 8.00 | x0.50 | [0.48, 0.55] | a note |"
    assert lines["default"].startswith("| default | 16.00 | x1.00 |  |")  # no range against itself
    assert "spans x1.00 is within this machine's noise" in md
    noisy = next(r for r in csv if r["name"] == "noisy")
    assert (noisy["vs_default_min"], noisy["vs_default_max"]) == pytest.approx((0.95238, 1.11111), rel=1e-4)


def test_a_speed_up_target_inside_its_rounds_range_says_so():
    results = {"train_cpu": {"speedup_vs_peer": 1.04, "speedup_range": [0.98, 1.12], "best_peer": "diffusers",
                             "param_gap": 0.0, "share_of_peak": 0.85},
               "train_large": {"speedup_vs_peer": 1.20, "speedup_range": [1.10, 1.30], "best_peer": "diffusers",
                               "param_gap": 0.0, "share_of_peak": 0.95},
               "matmul_peak_gflops": 94.0, "conv_peak_gflops": 117.0,
               "fid": {"speedup": 1.9, "max_abs_diff": 9e-6}, "data": {"inpainting": 100.0},
               "study": {"share": 0.8}}
    md = "\n".join(perf_run._targets_section(results))
    cpu = next(line for line in md.splitlines() if "(cpu preset, params" in line)
    large = next(line for line in md.splitlines() if "(larger config, params" in line)
    assert "x1.04 (rounds x0.98-x1.12)" in cpu and cpu.endswith("NOT MET (within the rounds' range) |")
    assert "x1.20 (rounds x1.10-x1.30)" in large and large.endswith("| MET |")  # x1.05 lies below every round
    assert "two runs can disagree" in md
