"""`bench report` on a real smoke study: every section, tables that match trials.csv / records.csv, links
that resolve, speed-ups that are the ratios of trials.csv's hours, failed trials and a single trial.

One two-stage study (a source stage, a target trained from scratch and from the source, two seeds) is run
once for the module (~20 s on one CPU thread) and reported once; the other tests work on copies of it.
"""

from __future__ import annotations

import json
import re
import shutil
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch
from PIL import Image

from bench import records
from bench.cli import main
from bench.report import write_report
from bench.report.tables import fmt, model_name
from model.errors import ConfigError

STUDY = """
    name: tiny_report
    description: two-stage study for the report tests
    quality_metric: kid
    base:
      data: {source: synthetic-faces, max_images: 8, synthetic_count: 24}
      train: {epochs_per_subset: 2, batch_size: 8}
      eval: {n_samples: 4, steps: 2, batch_size: 4, save_images: 2}
    stages:
      src: {task.name: inpainting, eval.metrics: [l1]}
      tgt: {task.name: colorization, transfer_source: src, eval.mmse_samples: 2}
    sweep:
      zip:
        stage: [tgt, tgt]
        transfer_source: [scratch, src]
    seeds: [0, 1]
    baseline: {transfer_source: scratch}
"""
LINK = re.compile(r"!?\[[^\]]*\]\(([^)]+)\)")


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report")
    (root / "tiny.yaml").write_text(textwrap.dedent(STUDY))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PALETTE_BENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        argv = ["run", str(root / "tiny.yaml"), "--scale", "smoke", "--results", str(root / "results"),
                "--no-report"]
        assert main(argv) == 0
    study_dir = root / "results" / "tiny_report"
    assert write_report(study_dir, formats=("md", "csv", "html")) == study_dir / "report.md"
    return study_dir


def _table(text: str, after: str) -> pd.DataFrame:
    """The first markdown table after the line `after`, as strings."""
    lines = text.split(after, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split(" | ")])
    return pd.DataFrame(rows[2:], columns=rows[0])




def test_report_has_every_section_and_the_run_facts(study):
    text = (study / "report.md").read_text()
    for heading in ["# Report: tiny_report", "## What was run", "## Paper-style tables", "### Quality",
                    "### Efficiency", "## Ablations", "### `transfer_source`",
                    "## Verdicts", "## Cost to reach a target", "## Figures", "## Qualitative results",
                    "## Findings"]:
        assert heading in text, heading
    assert "## Failed trials" not in text
    # the Reproduce command carries no folder of this machine: the file's name, the results folder as RESULTS
    assert ("# RESULTS: the folder that holds this study folder\nbench run tiny.yaml --scale smoke --results "
            "RESULTS\nbench report RESULTS/tiny_report") in text
    assert str(study.parent.parent) not in text
    # one stage: `stage` does not vary, so it is no ablation table; configs are named by what varies
    assert "### `stage`" not in text and "| scratch (baseline) |" in text and "| from src |" in text
    assert "| Scale | smoke |" in text and "4 complete, 0 failed" in text
    assert "| Device | cpu" in text and torch.__version__ in text  # recorded by the runner in trial.json
    assert "synthetic-faces" in text and "colorization" in text and "inpainting (paper masks)" in text
    params = pd.read_csv(study / "trials.csv")["num_parameters"].iloc[0]
    assert f"| Model parameters | {params:,} |" in text
    assert "FID@4" in text and "biased upward" in text  # 4 samples: the FID caveat
    assert "Mean ± std over seeds" in text
    # tgt also scores the mean of 2 draws: said in the run facts, shown for models and the trivial baseline alike
    assert "4 samples, ddim 2 steps; 'of mean': mean of 2 draws" in text
    quality = _table(text, "### Quality")
    gray = quality[quality["Model"].str.startswith("trivial: gray copy")].iloc[0]
    assert gray["PSNR of mean (dB)"] == gray["PSNR (dB)"] != "–"
    assert quality["PSNR of mean (dB)"].ne("–").sum() == 3  # two tgt configs and the gray copy; src has none


def test_every_link_is_relative_and_exists(study):
    links = LINK.findall((study / "report.md").read_text())
    names = {Path(link).name for link in links}
    assert {"quality_vs_training.png", "quality_vs_compute.png", "time_per_epoch.png",
            "denoising-strip.png", "report_quality.csv", "report_efficiency.csv",
            "report_ablation_tgt_transfer_source.csv", "report_curves.csv"} <= names
    assert {n for n in names if n.startswith("samples-")} == {"samples-tgt-scratch_baseline.png",
                                                             "samples-tgt-from_src.png"}  # one grid per config
    for link in links:
        assert not Path(link).is_absolute() and ".." not in link
        assert (study / link).is_file(), link
        if link.endswith(".png"):
            with Image.open(study / link) as im:
                assert 48 <= im.width <= 2000 and im.height <= 2000  # small, dpi ~100
    html = (study / "report.html").read_text()
    assert "<table>" in html and "<h2>Findings</h2>" in html
    sources = re.findall(r'<img src="([^"]+)" alt="[^"]*"', html)  # markdown-it-py's rendering
    assert len(sources) == sum(link.endswith(".png") for link in links)
    assert all((study / s).is_file() for s in sources)


def test_efficiency_table_matches_trials_csv(study):
    trials = pd.read_csv(study / "trials.csv")
    eff = pd.read_csv(study / "report" / "report_efficiency.csv")
    assert list(eff["label"]) == list(dict.fromkeys(trials["label"]))
    shown = _table((study / "report.md").read_text(), "### Efficiency").set_index("Model")
    for _, row in eff.iterrows():
        mine = trials[trials["label"] == row["label"]]
        base = trials[trials["is_baseline"] & (trials["stage"] == row["stage"])]
        assert row["seeds"] == 2
        for c in ("epochs", "images_seen", "steps", "time_per_epoch_min", "total_hours", "chain_hours"):
            assert row[f"{c}_mean"] == pytest.approx(mine[c].mean(), rel=1e-9)
        # the speed-up shown is the ratio of trials.csv's hours (baseline / config), and trial by trial
        # trials.csv's own `speedup` is that same ratio; on the CPU, of process CPU hours
        assert set(trials["speedup_clock"]) == {"cpu"}
        base_hours = base["cpu_hours"].mean()
        assert row["speedup"] == pytest.approx(base_hours / mine["cpu_hours"].mean(), rel=1e-9)
        for _, t in mine.iterrows():
            assert t["speedup"] == pytest.approx(base_hours / t["cpu_hours"], rel=1e-9)
        assert row["speedup_trial_mean"] == pytest.approx(mine["speedup"].mean(), rel=1e-9)
        cell = shown.loc[model_name(row)]
        assert cell["Speed-up (×)"] == f"{row['speedup']:.2f}"
        assert cell["Epochs"] == str(int(row["epochs_mean"]))
        assert cell["Optimizer steps"] == str(int(row["steps_mean"]))  # differs from images / batch: partial batches
    assert eff.loc[eff["is_baseline"], "speedup"].tolist() == pytest.approx([1.0])


def test_quality_table_matches_trials_csv(study):
    trials = pd.read_csv(study / "trials.csv")
    qual = pd.read_csv(study / "report" / "report_quality.csv")
    shown = _table((study / "report.md").read_text(), "### Quality")
    qual, shown = qual[~qual["is_trivial"]], shown[~shown["Model"].str.startswith("trivial: ")]  # test_gate.py
    for (_, row), (_, cells) in zip(qual.iterrows(), shown.iterrows(), strict=True):
        assert cells["Model"] == model_name(row)
        mine = trials[trials["label"] == row["label"]]
        for m in ("fid", "kid", "l1", "psnr", "ssim"):
            assert row[f"{m}_mean"] == pytest.approx(mine[m].mean(), rel=1e-9)
            assert row[f"{m}_std"] == pytest.approx(mine[m].std(ddof=1), rel=1e-9)
        assert cells["KID×10³"].startswith(f"{row['kid_mean'] * 1e3:.4g} ± ")
        assert cells["FID@4"].startswith(f"{row['fid_mean']:.4g}")


def test_ablation_tables_average_each_axis_value(study):
    trials = pd.read_csv(study / "trials.csv")
    assert json.loads((study / "study.json").read_text())["axes"] == ["stage", "transfer_source"]
    for axis in ["transfer_source"]:  # `stage` has one value: not an ablation axis here
        table = pd.read_csv(study / "report" / f"report_ablation_tgt_{axis}.csv")
        assert set(table["stage"]) == {"tgt"}
        assert table["trials"].sum() == len(trials)
        for _, row in table.iterrows():
            group = trials[trials[f"param:{axis}"] == row[axis]]
            assert row["trials"] == len(group)
            assert row["kid"] == pytest.approx(group["kid"].mean(), rel=1e-9)
            assert row["total_hours"] == pytest.approx(group["total_hours"].mean(), rel=1e-9)


def test_cost_to_target_follows_the_records(study):
    trials = pd.read_csv(study / "trials.csv")
    rec = pd.read_csv(study / "records.csv")
    reach = pd.read_csv(study / "report" / "report_cost_to_target.csv")
    reach = reach[reach["target"] == "baseline"]
    assert list(reach["label"]) == list(dict.fromkeys(trials["label"]))
    target = trials.loc[trials["transfer_source"] == "scratch", "kid"].mean()
    for _, row in reach.iterrows():
        assert row["target_value"] == pytest.approx(target, rel=1e-12)
        firsts = []
        for key in trials.loc[trials["label"] == row["label"], "trial"]:
            curve = rec[(rec["trial"] == key) & (rec["metric"] == "kid") & rec["target_stage"]]
            hit = curve[curve["value"] <= target * (1 + 1e-9)].sort_values("epoch")
            firsts += hit["images_seen"].iloc[:1].tolist()
            # trials.csv carries the same per trial
            got = trials.loc[trials["trial"] == key, "to_baseline_images"].iloc[0]
            assert (got == hit["images_seen"].iloc[0]) if len(hit) else pd.isna(got)
        assert row["reached"] == len(firsts)
        if firsts:
            assert row["images_mean"] == pytest.approx(sum(firsts) / len(firsts))
        else:
            assert pd.isna(row["images_mean"])
    # at least one from-scratch seed is at or below the mean of the two: the scratch row always reaches it
    assert reach["reached"].iloc[0] >= 1


def test_findings_are_computed_from_the_tables(study):
    text = (study / "report.md").read_text()
    findings = text.split("## Findings", 1)[1]
    verdicts = pd.read_csv(study / "report" / "report_verdicts.csv")
    assert set(verdicts["measure"]) == {"kid", "psnr", "hours"} and (verdicts["n"] == 2).all()  # two seeds, paired
    for _, v in verdicts.iterrows():  # a verdict word (and a finding) only where the interval resolves it
        excludes = (v["ratio_lo"] > 1 or v["ratio_hi"] < 1) if v["measure"] == "hours" else (v["lo"] > 0 or v["hi"] < 0)
        assert (v["verdict"] in ("better", "worse")) == (excludes and pd.isna(v["why"]))
        if v["verdict"] in ("better", "worse") and v["measure"] == "psnr":  # higher PSNR is better
            assert (v["verdict"] == "better") == (v["lo"] > 0)
        assert "against the baseline: " in findings or v["verdict"] not in ("better", "worse")
    if not pd.read_csv(study / "trials.csv")["learned"].all():  # the gate: no quality verdict with an unlearned trial
        assert verdicts.loc[verdicts["measure"] == "kid", "why"].str.contains("did not learn").all()
    assert "no difference resolved with 2 seeds" in findings or "against the baseline" in findings
    assert "fastest per epoch" not in findings and "One seed per config" not in findings


def _copy(study: Path, dst: Path) -> Path:
    shutil.copytree(study, dst, ignore=shutil.ignore_patterns("checkpoints", "report*"))
    return dst


def _fail(trial_dir: Path, reason: str) -> None:
    info = json.loads((trial_dir / "trial.json").read_text())
    info.update(state="failed", reason=reason, num_parameters=None)
    (trial_dir / "trial.json").write_text(json.dumps(info))


def test_failed_trials_and_a_single_config(study, tmp_path):
    copy = _copy(study, tmp_path / "tiny_report")
    trials = pd.read_csv(copy / "trials.csv")
    keep = trials[trials["is_baseline"] & (trials["seed"] == 0)]["trial"].iloc[0]
    failed = trials[~trials["is_baseline"] & (trials["seed"] == 0)]["trial"].iloc[0]
    for key in trials["trial"]:
        if key == failed:
            _fail(copy / "trials" / key, "RuntimeError: boom at epoch 1")
        elif key != keep:
            shutil.rmtree(copy / "trials" / key)
    records.rebuild(copy)
    assert main(["report", str(copy)]) == 0
    text = (copy / "report.md").read_text()
    assert "## Failed trials" in text and "RuntimeError: boom at epoch 1" in text
    assert "1 complete, 1 failed, 2 not run" in text
    assert "only one config" in text and "One seed per config: ± is the bootstrap standard error" in text
    row = _table(text, "### Quality").iloc[0]  # one seed: the evaluation's own sampling uncertainty
    se = pd.read_csv(copy / "trials.csv").set_index("trial").loc[keep, "kid_se"]
    assert row["KID×10³"].endswith(f"± {fmt(se * 1e3, 2)}") and se > 0
    eff = pd.read_csv(copy / "report" / "report_efficiency.csv")
    new = pd.read_csv(copy / "trials.csv").set_index("trial")
    assert eff["speedup"].tolist() == pytest.approx([new.loc[keep, "speedup"]], rel=1e-12)
    for link in LINK.findall(text):
        assert (copy / link).is_file(), link
    # every trial failed: the report still says what was run and why nothing is tabulated
    _fail(copy / "trials" / keep, "BenchError: no data")
    records.rebuild(copy)
    text = write_report(copy).read_text()
    assert "No trial completed" in text and "BenchError: no data" in text


def test_a_folder_that_is_not_a_study_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="not a study folder"):
        write_report(tmp_path)
    assert main(["report", str(tmp_path)]) == 2


def test_trivial_baselines_and_the_learned_gate(study, tmp_path, capsys):
    """Issue 13: the trivial baselines are rows of the quality table and lines on the quality figures, the
    gate is a column of trials.csv, the tables and Optuna's user attributes, and `bench run` ends with it."""
    import optuna

    trials = pd.read_csv(study / "trials.csv")
    trivial = pd.read_csv(study / "trivial.csv")
    assert list(trivial["trivial"]) == ["gray_copy"] and list(trivial["stage"]) == ["tgt"]
    for _, t in trials.iterrows():  # each trial's gate is its own final KID against the gray copy's
        assert t["trivial_best"] == "gray_copy" and t["trivial_kid"] == pytest.approx(trivial["kid"].iloc[0])
        assert t["ratio_to_trivial"] == pytest.approx(t["kid"] / t["trivial_kid"])
        assert t["learned"] == (t["kid"] < t["trivial_kid"])
    text = (study / "report.md").read_text()
    shown = _table(text, "### Quality").set_index("Model")
    assert shown.loc["trivial: gray copy", "KID×10³"] == f"{trivial['kid'].iloc[0] * 1e3:.4g}"
    learned = shown.loc["from src", "Learned"]
    assert learned == {2: "yes", 0: "no"}.get(int(trials[trials["transfer_source"] == "src"]["learned"].sum()))
    assert "trivial: gray copy" in text and "Learned" in _table(text, "### `transfer_source`").columns
    storage = f"sqlite:///{study.parent / 'bench.db'}"
    attrs = [t.user_attrs for s in optuna.get_all_study_summaries(storage) for t in
             optuna.load_study(study_name=s.study_name, storage=storage).trials if t.state.name == "COMPLETE"]
    assert len(attrs) == 4 and all(a["trivial_best"] == "gray_copy" and isinstance(a["learned"], bool)
                                   for a in attrs)
    copy = _copy(study, tmp_path / "results" / "tiny_report")
    shutil.copy(study.parent / "bench.db", tmp_path / "results" / "bench.db")
    (tmp_path / "tiny.yaml").write_text(textwrap.dedent(STUDY))
    capsys.readouterr()
    assert main(["run", str(tmp_path / "tiny.yaml"), "--scale", "smoke", "--results", str(tmp_path / "results"),
                 "--no-report"]) == 0  # every trial already finished: nothing trains
    last = capsys.readouterr().out.strip().splitlines()[-1]
    unlearned = int((~trials["learned"]).sum())
    if unlearned:
        assert last.startswith(f"{unlearned} of 4 trials did not learn") and "no conclusion" in last
    else:
        assert "did not learn" not in last
    (copy / "trivial.csv").unlink()  # a study folder written before the gate: its report scores them once
    for file in (copy / "runs").glob("*/trivial.json"):
        file.unlink()
    pd.read_csv(copy / "trials.csv").drop(columns=["learned"]).to_csv(copy / "trials.csv", index=False)
    write_report(copy)
    assert pd.read_csv(copy / "trivial.csv").equals(trivial)
    assert "trivial: gray copy" in (copy / "report.md").read_text()


def test_the_html_report_renders_in_headless_chromium_with_every_image(study, tmp_path):
    """Issue 23: the report as a reader sees it. Skips without Chromium, unless PALETTE_BENCH_REQUIRE_CHROMIUM=1."""
    import os

    from bench.report import screenshot

    if screenshot.chromium() is None:
        if os.environ.get("PALETTE_BENCH_REQUIRE_CHROMIUM") == "1":
            pytest.fail("PALETTE_BENCH_REQUIRE_CHROMIUM=1 but no chromium on PATH (apt-get install chromium)")
        pytest.skip("headless Chromium not installed (apt-get install chromium)")
    page = study / "report.html"
    sources = re.findall(r'<img src="([^"]+)"', page.read_text())
    assert len(sources) >= 5
    assert screenshot.image_check(page) == (len(sources), [])  # every image loaded
    shot = screenshot.screenshot(page, tmp_path / "report.png", 1000, 1200)
    with Image.open(shot) as im:
        assert im.size == (1000, 1200)
        lo, hi = im.convert("L").getextrema()
        assert hi - lo > 100  # text and tables drawn, not a blank page
    broken = study / "broken.html"  # the check sees a missing file
    broken.write_text(page.read_text().replace(sources[0], "report/missing.png", 1))
    try:
        assert screenshot.image_check(broken) == (len(sources), ["report/missing.png"])
    finally:
        broken.unlink()


def test_reproduce_paths_are_relative_or_named(tmp_path, monkeypatch):
    """The Reproduce command carries no folder of the machine it ran on: a path under the working folder is
    shown relative to it, any other as RESULTS (explained in the command's comment line), never cut to its last
    part (which would name a wrong folder)."""
    from bench.report.build import _relative

    monkeypatch.chdir(tmp_path)
    assert _relative(tmp_path / "res" / "x") == "res/x"
    assert _relative("results") == "results"
    assert _relative("/elsewhere/res") is None


def test_the_header_says_when_names_keep_epochs_the_scale_changed(study):
    from bench.report import build, tables

    data = tables.load(study)
    assert "| Epochs |" not in build._header(data)  # smoke: the file's epochs as written
    data.meta["preset"] = {**data.meta.get("preset", {}), "scale": "cpu", "epoch_multiplier": 0.6}
    data.meta["scale"] = "cpu"
    row = next(line for line in build._header(data).splitlines() if line.startswith("| Epochs |"))
    assert "times 0.6 at the cpu scale" in row and "what was trained is N × E below" in row
