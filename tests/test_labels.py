"""Issue 23's report language: short config names (bench/report/labels.py), `sweep.names` / `sweep.follows`
(bench/study.py), ablation tables within a stage, images seen on a mixed-N figure's x axis, one line per seed
against time, and the same axes in optuna-dashboard (bench/search_space.py). Synthetic tables, no training."""

from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from bench import search_space
from bench.report import figures, labels, tables
from bench.report.tables import StudyData
from bench.study import load_study
from model.errors import ConfigError


def _trials_frame(study) -> pd.DataFrame:
    """trials.csv's identifying columns for a loaded study (label, stage, param:<axis>)."""
    return pd.DataFrame([{"label": t.label, "stage": t.run.stage, **{f"param:{a}": t.point.get(a) for a in study.axes}}
                         for t in study.trials])


def _meta(study) -> dict:
    return {"axes": study.axes, "follows": study.follows, "names": study.names}


def _write(tmp_path, text: str):
    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_a_study_whose_points_differ_in_one_axis_gets_one_axis_labels(tmp_path):
    study = load_study(_write(tmp_path, """
        base: {data.source: synthetic-faces, train.subsets: 4, diffusion.timesteps: 200}
        sweep: {grid: {model.dropout: [0.0, 0.1]}}
        seeds: [0, 1]
    """), "smoke")
    names = labels.short_labels(_trials_frame(study), _meta(study))
    assert list(names) == ["dropout=0", "dropout=0", "dropout=0.1", "dropout=0.1"]


def test_paper_study_labels_name_what_varies_within_each_stage():
    study = load_study("ablations/paper.yaml", "smoke")
    assert study.follows == ["eval.loss_every_epochs"]  # set by the transfer source: not an ablation axis
    frame = _trials_frame(study)
    names = dict(zip(frame["label"], labels.short_labels(frame, _meta(study)), strict=True))
    assert list(dict.fromkeys(names.values())) == ["N=1, E=160", "N=4, E=40", "N=4, E=160", "scratch",
                                                   "from face_inpaint", "from face_color"]
    meta = _meta(study)
    assert labels.ablation_axes(meta) == ["transfer_source", "train.subsets", "train.epochs_per_subset"]
    # a folder written before `follows`: its eval.* axes follow
    assert labels.follows({"axes": study.axes}) == ["eval.loss_every_epochs"]
    # optuna-dashboard: no parameter for the following axis, and a named objective
    stage = search_space.trials_by_stage(study)["face_inpaint"]
    assert list(search_space.search_space(stage, study.follows)) == ["stage", "transfer_source", "train.subsets",
                                                                     "train.epochs_per_subset", "seed"]
    assert search_space.metric_name("kid") == "KID"


def test_sweep_names_and_follows_are_validated(tmp_path):
    good = """
        stages: {a: {task.name: inpainting}, b: {task.name: colorization}}
        sweep:
          zip: {stage: [a, a, b], model.dropout: [0.0, 0.1, 0.0], eval.every_epochs: [1, 2, 1]}
          names: [plain, dropped, color]
          follows: []
    """
    study = load_study(_write(tmp_path, good), "smoke")
    assert study.names == {"stage=a,dropout=0.0,every_epochs=1": "plain", "stage=a,dropout=0.1,every_epochs=2":
                           "dropped", "stage=b,dropout=0.0,every_epochs=1": "color"} and study.follows == []
    assert list(labels.short_labels(_trials_frame(study), _meta(study))) == ["plain", "dropped", "color"]
    cases = [("names: [plain, dropped, color]", "names: [p, q]", "sweep.names: 2 names for 3 sweep points"),
             ("names: [plain, dropped, color]", "names: [p, p, q]", "sweep.names: 'p' names two points of stage a"),
             ("follows: []", "follows: [train.subsets]", "sweep.follows: 'train.subsets' is not a swept axis"),
             ("follows: []", "follows: 1", "sweep.follows")]
    for old, new, message in cases:
        with pytest.raises(ConfigError) as e:
            load_study(_write(tmp_path, good.replace(old, new)), "smoke")
        assert str(e.value).startswith(str(tmp_path / "s.yaml")) and message in str(e.value)
        assert "\n" not in str(e.value)


def _two_stage_data(tmp_path) -> StudyData:
    """Two stages that sweep the same axis: KIDs differ by stage so a mixed mean would show."""
    rows = []
    for stage, base in (("inpaint", 0.1), ("color", 0.5)):
        for d in (0.0, 0.1):
            for seed in (0, 1):
                rows.append({"trial": f"{stage}{d}{seed}", "label": f"stage={stage},dropout={d}", "seed": seed,
                             "stage": stage, "transfer_source": "scratch", "is_baseline": d == 0.0,
                             "state": "complete", "param:stage": stage, "param:model.dropout": d,
                             "kid": base + d + 0.01 * seed, "epochs": 4, "images_seen": 64, "steps": 8,
                             "time_per_epoch_min": 1.0 + seed, "total_hours": 0.1 + 0.1 * seed,
                             "chain_hours": 0.1 + 0.1 * seed})
    trials = pd.DataFrame(rows)
    meta = {"quality_metric": "kid", "axes": ["stage", "model.dropout"]}
    trials["name"] = labels.short_labels(trials, meta)
    return StudyData(tmp_path, meta, trials, pd.DataFrame())


def test_ablation_tables_never_mix_stages(tmp_path):
    data = _two_stage_data(tmp_path)
    assert sorted(set(data.trials["name"])) == ["dropout=0", "dropout=0.1"]
    blocks = tables.ablation_tables(data)
    assert list(blocks) == [("inpaint", "model.dropout"), ("color", "model.dropout")]  # `stage` is no axis
    for (stage, _), (raw, view) in blocks.items():
        assert set(raw["stage"]) == {stage} and raw["trials"].tolist() == [2, 2]
        here = data.trials[data.trials["stage"] == stage]
        assert raw["kid"].tolist() == pytest.approx(here.groupby("param:model.dropout")["kid"].mean().tolist())
        assert list(view.columns[:2]) == ["dropout", "Trials"]
    quality = tables.quality_table(data)[1]
    assert list(quality.columns[:2]) == ["Stage", "Model"]  # short names are unique within a stage only


def _records(data: StudyData, per_epoch: dict[str, int]) -> pd.DataFrame:
    """Four evaluations per trial; `per_epoch`: images per epoch by stage; hours differ between seeds."""
    rows = []
    for _, t in data.trials.iterrows():
        for e in range(1, 5):
            rows.append({"trial": t["trial"], "label": t["label"], "seed": t["seed"], "stage": t["stage"],
                         "transfer_source": "scratch", "target_stage": True, "epoch": e,
                         "images_seen": e * per_epoch[t["label"]],
                         "train_hours": e * (0.01 + 0.02 * t["seed"]), "metric": "kid", "value": t["kid"] / e})
    return pd.DataFrame(rows)


def test_a_mixed_n_figure_counts_images_seen(tmp_path):
    data = _two_stage_data(tmp_path)
    mixed = {"stage=inpaint,dropout=0.0": 16, "stage=inpaint,dropout=0.1": 4,  # N = 1 vs N = 4
             "stage=color,dropout=0.0": 16, "stage=color,dropout=0.1": 16}
    rec = _records(data, mixed)
    assert figures.progress_axis(rec[rec["stage"] == "inpaint"]) == ("images_seen", "images seen")
    assert figures.progress_axis(rec[rec["stage"] == "color"]) == ("epoch", "epoch")
    data.records = rec
    axes = _drawn(figures.quality_vs_training, data, tmp_path)
    assert [ax.get_xlabel() for ax in axes if ax.axison] == ["images seen", "epoch"]


def test_the_training_loss_is_drawn_only_where_the_configs_share_its_definition(tmp_path):
    data = _two_stage_data(tmp_path)
    rec = _records(data, {label: 16 for label in data.trials["label"]})
    data.records = pd.concat([rec, rec.assign(metric="loss", value=rec["value"] / 10)])
    assert [ax.get_ylabel() for ax in _drawn(figures.quality_vs_training, data, tmp_path) if ax.axison] == \
        ["KID×10³", "training loss"] * 2  # dropout leaves the objective as it is
    # inpainting now compares two loss weightings: its training losses are different quantities
    data.trials["param:diffusion.loss_weighting"] = np.where(
        (data.trials["stage"] == "inpaint") & (data.trials["param:model.dropout"] > 0), "p2", "none")
    assert [figures.comparable_training_loss(data, st) for st in ("inpaint", "color")] == [False, True]
    assert [ax.get_ylabel() for ax in _drawn(figures.quality_vs_training, data, tmp_path) if ax.axison] == \
        ["KID×10³", "KID×10³", "training loss"]


def test_psnr_is_drawn_beside_kid_and_its_numbers_are_tabulated(tmp_path):
    data = _two_stage_data(tmp_path)
    rec = _records(data, {label: 16 for label in data.trials["label"]})
    psnr = rec.assign(metric="psnr", value=20 + rec["epoch"] + rec["seed"])  # rises with training
    data.records = pd.concat([rec, psnr, rec.assign(metric="kid_se", value=0.001)])
    assert [ax.get_ylabel() for ax in _drawn(figures.quality_vs_training, data, tmp_path) if ax.axison] == \
        ["KID×10³", "PSNR (dB)"] * 2
    table = figures.curves_table(data)
    assert set(table["metric"]) == {"kid", "psnr"}  # standard errors are not curves
    assert len(table) == 2 * 4 * 4 and (table["seeds"] == 2).all()  # 4 configs x 2 metrics x 4 evaluations
    row = table[(table["metric"] == "psnr") & (table["epoch"] == 3)].iloc[0]
    assert row["mean"] == pytest.approx(23.5) and row["sd"] == pytest.approx(np.std([23, 24], ddof=1))
    assert row["model"] in {figures.model_name(r) for _, r in data.trials.iterrows()}  # as the legend names it


def _drawn(fn, data, tmp_path) -> list:
    """The axes `fn` drew (its figure kept open)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(figures.plt, "close", lambda fig: None)
        assert fn(data, tmp_path) is not None
    fig = plt.gcf()
    axes = fig.axes
    plt.close(fig)
    return axes


def test_time_figures_draw_one_line_per_seed(tmp_path):
    data = _two_stage_data(tmp_path)
    data.records = _records(data, {label: 16 for label in data.trials["label"]})
    axes = _drawn(figures.quality_vs_compute, data, tmp_path)
    assert all(ax.get_xlim()[0] == 0 for ax in axes if ax.axison)  # time from the start of training
    seed_x = {s: np.array([e * (0.01 + 0.02 * s) for e in range(1, 5)]) * 60 for s in (0, 1)}  # minutes (< 1 h)
    lines = [ln for ax in axes for ln in ax.get_lines() if len(ln.get_xdata()) > 1 and ln.get_linestyle() == "-"]
    assert len(lines) == 8  # 2 stages x 2 configs x 2 seeds
    for ln in lines:  # each line runs through the evaluations of one seed only
        x = np.asarray(ln.get_xdata(), dtype=float)
        assert any(np.allclose(np.sort(x), v) for v in seed_x.values()), x
    # a quality axis is logarithmic where its values span more than 5x: inpaint 0.21 / 0.025, not color 0.61 / 0.125
    assert [ax.get_yscale() for ax in axes if ax.axison] == ["log", "linear"]
