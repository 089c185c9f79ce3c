"""The report's figures (seaborn on the Agg backend, small PNGs): quality against epochs, images seen and
training hours, time per epoch, and the epochs each transfer source needs to reach the from-scratch quality.
The quality panels carry the stage's trivial baselines (bench/report/gate.py) as gray horizontal lines: a curve
that stays on the wrong side of them has not learned anything a copy of the input does not give.

Each function writes one PNG into `out_dir` and returns its path, or None when the study has nothing to
plot for it (e.g. no evaluation recorded). Stages are plotted in separate panels: their tasks differ, so
their quality numbers are not comparable.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from .gate import trivial_name  # noqa: E402
from .tables import QUALITY, SCALE, StudyData, model_name  # noqa: E402

DPI = 100
NAMES = dict(QUALITY) | {"loss": "training loss"}
TRIVIAL_STYLES = ["--", ":", "-."]


def _trivial_lines(data: StudyData, metric: str, stage: str) -> list[tuple[str, float, str]]:
    """(legend label, scaled value, line style) of each trivial baseline of `stage` that has `metric`; one
    style per baseline across the figure."""
    t = data.trivial
    if t.empty or metric not in t:
        return []
    styles = {n: TRIVIAL_STYLES[i % len(TRIVIAL_STYLES)] for i, n in enumerate(dict.fromkeys(t["trivial"]))}
    here = t[(t["stage"] == stage)].assign(v=lambda d: pd.to_numeric(d[metric], errors="coerce")).dropna(subset="v")
    lines = [(f"trivial: {trivial_name(n)}", v * SCALE.get(metric, 1.0), styles[n])
             for n, v in zip(here["trivial"], here["v"], strict=True)]
    return list(dict.fromkeys(lines))


def _palette(data: StudyData) -> dict[str, tuple]:
    labels = list(dict.fromkeys(data.complete["label"]))
    colors = sns.color_palette("tab10" if len(labels) <= 10 else "husl", len(labels))
    return dict(zip(labels, colors, strict=True))


def _curves(data: StudyData, metrics: list[str]) -> pd.DataFrame:
    """Records of the trained (target) stage for `metrics`, with display names and scaled values."""
    rec = data.records
    if rec.empty:
        return rec
    rec = rec[(rec["target_stage"].astype(str).str.lower() == "true") & rec["metric"].isin(metrics)].copy()
    rec["value"] = rec["value"] * rec["metric"].map(lambda m: SCALE.get(m, 1.0))
    done = data.complete.set_index("trial")
    offset = done["chain_hours"] - done["total_hours"]  # training time of the upstream (source) stages
    rec["hours_incl_source"] = rec["train_hours"] + rec["trial"].map(offset).fillna(0.0)
    return rec


def _save(fig, handles, labels, path: Path) -> Path:
    if handles:
        ncol = 1 if max(map(len, labels)) > 60 else min(2, len(labels))  # long run labels: one column
        fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=7, frameon=False)
        legend_inches = 0.25 + 0.16 * -(-len(labels) // ncol)
        fig.tight_layout(rect=(0, min(0.5, legend_inches / fig.get_figheight()), 1, 1))
    else:
        fig.tight_layout()
    fig.savefig(path, dpi=DPI, bbox_inches="tight")  # the whole legend, however long its labels
    plt.close(fig)
    return path


def _grid(rec: pd.DataFrame, panels: list[list[tuple[str, str, str, str]]], data: StudyData,
          path: Path) -> Path | None:
    """Rows x columns of panels (metric, x column, x label, stage): a line per config, mean ± sd of seeds."""
    if rec.empty or not panels or not panels[0]:
        return None
    n_trivial = 0 if data.trivial.empty else len(data.trivial[["stage", "trivial"]].drop_duplicates())
    legend = 0.25 + 0.16 * ((data.complete["label"].nunique() + n_trivial + 1) // 2)
    n_rows, n_cols = len(panels), max(len(r) for r in panels)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(max(7.2, 3.6 * n_cols), 2.4 * n_rows + legend),
                             squeeze=False)
    palette, names = _palette(data), {r["label"]: model_name(r) for _, r in data.complete.iterrows()}
    handles = {}
    for i, row in enumerate(panels):
        for j in range(n_cols):
            ax = axes[i][j]
            metric, x, xlabel, stage = row[j] if j < len(row) else ("", "", "", "")
            part = rec[(rec["metric"] == metric) & (rec["stage"] == stage)]
            if part.empty:
                ax.set_axis_off()
                continue
            marker = "o" if part[x].nunique() <= 25 else None  # no dots on a long per-epoch loss curve
            sns.lineplot(part, x=x, y="value", hue="label", palette=palette, marker=marker, errorbar="sd",
                         ax=ax, legend=True)
            for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
                handles.setdefault(lab, h)
            for lab, value, style in _trivial_lines(data, metric, stage):
                h = ax.axhline(value, color="0.4", lw=1.1, ls=style, zorder=1)
                handles.setdefault(lab, h)
            if ax.get_legend():
                ax.get_legend().remove()
            ax.set_xlabel(xlabel, fontsize=8)
            ax.set_ylabel(NAMES.get(metric, metric), fontsize=8)
            ax.tick_params(labelsize=7)
            ax.xaxis.set_major_locator(MaxNLocator(4, integer=x in ("epoch", "images_seen")))
            if "hours" in x:
                ax.ticklabel_format(axis="x", style="sci", scilimits=(-2, 4))
            if data.complete["stage"].nunique() > 1:
                ax.set_title(stage, fontsize=8)
    labels = [lab for lab in palette if lab in handles] + [lab for lab in handles if lab.startswith("trivial: ")]
    return _save(fig, [handles[lab] for lab in labels], [names.get(lab, lab) for lab in labels], path)


def _stages(data: StudyData) -> list[str]:
    return list(dict.fromkeys(data.complete["stage"]))


def quality_vs_epoch(data: StudyData, out_dir: Path) -> Path | None:
    """Rows: the quality metric, FID, training loss; columns: stages (one stage: a single row)."""
    wanted = list(dict.fromkeys([data.quality, "fid", "loss"]))
    rec = _curves(data, wanted)
    metrics = [m for m in wanted if not rec.empty and (rec["metric"] == m).any()]
    stages = _stages(data)
    panels = [[(m, "epoch", "epoch", st) for st in stages] for m in metrics]
    if len(stages) == 1:  # one row of metrics
        panels = [[row[0] for row in panels]]
    return _grid(rec, panels, data, out_dir / "quality_vs_epoch.png")


def quality_vs_compute(data: StudyData, out_dir: Path) -> Path | None:
    """Rows: stages; columns: images seen, training hours (and hours including the source's training)."""
    rec = _curves(data, [data.quality])
    xs = [("images_seen", "images seen"), ("train_hours", "training hours")]
    if data.has_transfer:
        xs.append(("hours_incl_source", "hours incl. source training"))
    panels = [[(data.quality, x, xl, st) for x, xl in xs] for st in _stages(data)]
    return _grid(rec, panels, data, out_dir / "quality_vs_compute.png")


def time_per_epoch(data: StudyData, out_dir: Path) -> Path | None:
    done = data.complete.dropna(subset=["time_per_epoch_min"])
    if done.empty:
        return None
    df = done.assign(model=[model_name(r) for _, r in done.iterrows()])
    fig, ax = plt.subplots(figsize=(6.5, 0.9 + 0.35 * df["model"].nunique()))
    colors = _palette(data)
    palette = {model_name(r): colors[r["label"]] for _, r in done.drop_duplicates("label").iterrows()}
    sns.barplot(df, y="model", x="time_per_epoch_min", hue="model", palette=palette, errorbar="sd", ax=ax,
                legend=False)
    ax.set_xlabel("time per epoch (min)", fontsize=8)
    ax.set_ylabel("")
    ax.tick_params(labelsize=7)
    return _save(fig, [], [], out_dir / "time_per_epoch.png")


def reach_bars(reach: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """Bar lengths (NaN: no bar) and labels of the transfer figure. The learned gate applies as in the table:
    no bar and no verdict where the comparison involves a model that did not learn (bench/report/gate.py)."""
    gated = reach["unlearned"].astype(bool).to_numpy() if "unlearned" in reach else np.zeros(len(reach), bool)
    epochs = np.where(gated, np.nan, reach["epochs_to_reach"].to_numpy(dtype=float))
    texts = ["no verdict: did not learn" if g else f"not reached in {t:g}" if np.isnan(e) else f"{e:g}"
             for e, t, g in zip(epochs, reach["trained_epochs"], gated, strict=True)]
    return epochs, texts


def transfer_reach(reach: pd.DataFrame, out_dir: Path) -> Path | None:
    """Bars of the epochs each source needs to reach the scratch run's final quality ('not reached')."""
    if reach.empty:
        return None
    names = [f"{r['stage']} ← {r['transfer_source']}" for _, r in reach.iterrows()]
    fig, ax = plt.subplots(figsize=(6.5, 0.9 + 0.35 * len(names)))
    y = np.arange(len(names))
    epochs, texts = reach_bars(reach)
    colors = ["0.6" if s == "scratch" else "C0" for s in reach["transfer_source"]]
    ax.barh(y, np.nan_to_num(epochs), color=colors)
    for yi, (e, text) in enumerate(zip(epochs, texts, strict=True)):
        ax.text(0 if np.isnan(e) else e, yi, " " + text, va="center", fontsize=7)
    ax.set_yticks(y, names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("epochs to reach the from-scratch final quality", fontsize=8)
    ax.set_xlim(0, max(1.0, float(np.nanmax(np.r_[epochs, reach["trained_epochs"]]))) * 1.3)
    return _save(fig, [], [], out_dir / "transfer_reach.png")
