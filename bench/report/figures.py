"""The report's figures (seaborn on the Agg backend, small PNGs): quality against training progress and
against training time, time per epoch, and the epochs each transfer source needs to reach the from-scratch
quality. The quality panels carry the stage's trivial baselines (bench/report/gate.py) as gray horizontal lines:
a curve that stays on the wrong side of them has not learned anything a copy of the input does not give.

One figure row per stage, with its own legend of short names (labels.py): stages differ in task and data, so
their quality numbers are not comparable. Progress is counted in images seen (edm), epochs only where every
config's epoch is the same data; a quality axis is logarithmic where its values span more than 5x; against
time, each seed is its own line (seeds differ in time, a line through several would run backwards).

Each function writes one PNG into `out_dir` and returns its path, or None when the study has nothing to
plot for it (e.g. no evaluation recorded).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter  # noqa: E402

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
    """One colour per config, counted within its stage (each stage has its own legend)."""
    out = {}
    for _, labels in data.complete.groupby("stage", sort=False)["label"]:
        labels = list(dict.fromkeys(labels))
        out |= dict(zip(labels, sns.color_palette("tab10" if len(labels) <= 10 else "husl", len(labels)),
                        strict=True))
    return out


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


def progress_axis(rec: pd.DataFrame) -> tuple[str, str]:
    """(column, axis label) of a stage's training progress: epochs only where every trial's epoch is the same
    number of images (one subset size); else images seen, the one count that compares N = 1 with N = 4 (edm)."""
    seen = rec[rec["epoch"] > 0]
    per_epoch = (seen["images_seen"] / seen["epoch"]).round(6)
    return ("epoch", "epoch") if per_epoch.nunique() <= 1 else ("images_seen", "images seen")


def _time_unit(hours: pd.Series) -> tuple[float, str]:
    """(factor from hours, unit) that keeps a time axis's ticks readable: h, min or s."""
    top = float(hours.max()) if len(hours) else 0.0
    return (1.0, "h") if top >= 1 else (60.0, "min") if top * 60 >= 1 else (3600.0, "s")


def _log_if_wide(ax, values: list[float]) -> None:
    """A log y axis where the plotted values (trivial baselines included) span more than 5x."""
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    if len(v) and (v > 0).all() and v.max() / v.min() > 5:
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))  # 200, not 2×10²
        ax.yaxis.set_minor_formatter(NullFormatter())


def _panel(ax, part: pd.DataFrame, x: str, metric: str, stage: str, data: StudyData, palette: dict,
           handles: dict, per_seed: bool) -> None:
    """One panel: a line per config (mean ± sd over seeds, or one line per seed), the trivial baselines gray."""
    marker = "o" if part[x].nunique() <= 25 else None  # no dots on a long per-epoch loss curve
    colours = {k: v for k, v in palette.items() if k in set(part["label"])}
    if per_seed:  # times differ between seeds: a line through points of different seeds would zig-zag
        sns.lineplot(part, x=x, y="value", hue="label", units="seed", estimator=None, palette=colours,
                     marker=marker, lw=1.2, ax=ax, legend=True)
    else:
        sns.lineplot(part, x=x, y="value", hue="label", palette=colours, marker=marker, errorbar="sd", ax=ax,
                     legend=True)
    for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
        handles.setdefault(lab, h)
    values = list(part["value"])
    for lab, value, style in _trivial_lines(data, metric, stage):
        handles.setdefault(lab, ax.axhline(value, color="0.45", lw=1.1, ls=style, zorder=1))
        values.append(value)
    if ax.get_legend():
        ax.get_legend().remove()
    _log_if_wide(ax, values)
    ax.set_ylabel(NAMES.get(metric, metric), fontsize=8)
    ax.tick_params(labelsize=7)


def _rows(data: StudyData, rec: pd.DataFrame, columns, path: Path) -> Path | None:
    """One figure row per stage, each with its own legend at its right. `columns(stage, rec of the stage)`
    -> [(metric, x column, x label, per_seed, x factor)] for that row's panels."""
    stages = [st for st in _stages(data) if not rec.empty and (rec["stage"] == st).any()]
    specs = {st: columns(st, rec[rec["stage"] == st]) for st in stages}
    specs = {st: s for st, s in specs.items() if s}
    if not specs:
        return None
    n_cols = max(len(s) for s in specs.values())
    fig, axes = plt.subplots(len(specs), n_cols, figsize=(3.1 * n_cols + 2.0, 2.3 * len(specs)), squeeze=False)
    palette = _palette(data)
    names = {r["label"]: model_name(r) for _, r in data.complete.iterrows()}
    for i, (stage, spec) in enumerate(specs.items()):
        handles: dict = {}
        here = rec[rec["stage"] == stage]
        for j in range(n_cols):
            ax = axes[i][j]
            if j >= len(spec):
                ax.set_axis_off()
                continue
            metric, x, xlabel, per_seed, factor = spec[j]
            part = here[here["metric"] == metric].assign(**{x: lambda d, x=x, f=factor: d[x] * f})
            if part.empty:
                ax.set_axis_off()
                continue
            _panel(ax, part, x, metric, stage, data, palette, handles, per_seed)
            ax.set_xlabel(xlabel, fontsize=8)
            ax.set_xlim(left=0)  # training from its start: one evaluation is not a zoom onto 93-99 epochs
            ax.xaxis.set_major_locator(MaxNLocator(4, integer=x in ("epoch", "images_seen")))
            if len(specs) > 1 or data.complete["stage"].nunique() > 1:
                ax.set_title(stage, fontsize=8, loc="left")
        order = [lab for lab in palette if lab in handles] + [lab for lab in handles if lab.startswith("trivial: ")]
        last = max(j for j in range(n_cols) if axes[i][j].axison)
        axes[i][last].legend([handles[lab] for lab in order], [names.get(lab, lab) for lab in order],
                             loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI, bbox_inches="tight")  # the legends too, however long their labels
    plt.close(fig)
    return path


def _stages(data: StudyData) -> list[str]:
    return list(dict.fromkeys(data.complete["stage"]))


# Keys that change what the training loss is: its target, norm, weighting over noise levels, or the levels it is
# averaged over. Configs that differ in one report training losses of different objectives: one panel would
# rank them by their definitions (P2's weighted loss sits 10x below the unweighted one), not by what they learned.
LOSS_DEFINING = ("diffusion.prediction", "diffusion.loss", "diffusion.loss_weighting", "diffusion.min_snr_gamma",
                 "diffusion.p2_k", "diffusion.p2_gamma", "diffusion.noise_levels", "diffusion.log_normal_mean",
                 "diffusion.log_normal_std", "diffusion.laplace_mu", "diffusion.laplace_b")


def comparable_training_loss(data: StudyData, stage: str) -> bool:
    """Whether the stage's configs all train on the same objective (no LOSS_DEFINING axis varies within it)."""
    here = data.complete[data.complete["stage"] == stage]
    return not any(f"param:{k}" in here and here[f"param:{k}"].astype(str).nunique() > 1 for k in LOSS_DEFINING)


def quality_vs_training(data: StudyData, out_dir: Path) -> Path | None:
    """Per stage: the quality metric, FID, single-sample PSNR (distortion beside perception), the held-out loss
    (where recorded, model/heldout.py: one yardstick for every config) and the training loss against training
    progress (progress_axis: images seen, or epochs where every config's epoch is the same data), mean ± sd over
    seeds. The training loss only where the stage's configs share its definition (comparable_training_loss)."""
    wanted = list(dict.fromkeys([data.quality, "fid", "psnr", "val_loss", "loss"]))
    rec = _curves(data, wanted)

    def columns(stage, here):
        x, xlabel = progress_axis(here)
        shown = [m for m in wanted if m != "loss" or comparable_training_loss(data, stage)]
        return [(m, x, xlabel, False, 1.0) for m in shown if (here["metric"] == m).any()]

    return _rows(data, rec, columns, out_dir / "quality_vs_training.png")


def curves_table(data: StudyData) -> pd.DataFrame:
    """The learning curves' numbers: per stage, config, evaluated metric and point of training (epoch, images
    seen), the mean, sd and count over seeds, unscaled (KID as computed, not x10^3). The training-loss columns
    (per epoch, not evaluated) are left out. Empty without records."""
    rec = data.records
    if rec.empty:
        return pd.DataFrame()
    from ..records import EPOCH_METRICS

    skip = {*EPOCH_METRICS, "eval_seconds", "eval_cpu_seconds", "n_samples", "sample_seconds_per_image"}
    rec = rec[(rec["target_stage"].astype(str).str.lower() == "true") & ~rec["metric"].isin(skip)
              & ~rec["metric"].str.endswith(("_se", "_std"))]
    if rec.empty:
        return pd.DataFrame()
    names = {r["label"]: model_name(r) for _, r in data.complete.iterrows()}
    out = (rec.groupby(["stage", "label", "metric", "epoch", "images_seen"], sort=False)["value"]
           .agg(mean="mean", sd="std", seeds="count").reset_index())
    out.insert(2, "model", out["label"].map(names))
    return out.sort_values(["stage", "label", "metric", "images_seen"], kind="stable").reset_index(drop=True)


def quality_vs_compute(data: StudyData, out_dir: Path) -> Path | None:
    """Per stage: the quality metric against training time (and time including the source stages' training),
    one line per seed: seeds differ in time, so their mean at an evaluation would mix unequal times."""
    rec = _curves(data, [data.quality])

    def columns(stage, here):
        transfer = (here["transfer_source"].astype(str) != "scratch").any()  # else both panels are one
        xs = [("train_hours", "training time")] + ([("hours_incl_source", "incl. source training")]
                                                   if transfer else [])
        k, unit = _time_unit(here[xs[-1][0]])
        return [(data.quality, x, f"{xl} ({unit})", True, k) for x, xl in xs]

    return _rows(data, rec, columns, out_dir / "quality_vs_compute.png")


def time_per_epoch(data: StudyData, out_dir: Path) -> Path | None:
    """Per stage (epochs of different stages are different data): each config's time per epoch, a bar for the
    mean over seeds and a dot per seed."""
    done = data.complete.dropna(subset=["time_per_epoch_min"])
    if done.empty:
        return None
    k, unit = _time_unit(done["time_per_epoch_min"] / 60)
    df = done.assign(model=[model_name(r) for _, r in done.iterrows()], t=done["time_per_epoch_min"] / 60 * k)
    stages = list(dict.fromkeys(df["stage"]))
    sizes = [df[df["stage"] == st]["model"].nunique() for st in stages]
    fig, axes = plt.subplots(len(stages), 1, figsize=(5.0, 0.5 * len(stages) + 0.28 * sum(sizes) + 0.3),
                             squeeze=False, sharex=True, height_ratios=[s + 0.8 for s in sizes])
    colors = _palette(data)
    for ax, stage in zip(axes[:, 0], stages, strict=True):
        here = df[df["stage"] == stage]
        palette = {model_name(r): colors[r["label"]] for _, r in here.drop_duplicates("label").iterrows()}
        sns.barplot(here, y="model", x="t", hue="model", palette=palette, errorbar=None, alpha=0.6, ax=ax,
                    legend=False)
        sns.stripplot(here, y="model", x="t", color="0.15", size=3, ax=ax, legend=False)
        ax.set_ylabel("")
        ax.set_xlabel(f"time per epoch ({unit})", fontsize=8)
        ax.tick_params(labelsize=7)
        if len(stages) > 1:
            ax.set_title(stage, fontsize=8, loc="left")
    fig.tight_layout()
    fig.savefig(out_dir / "time_per_epoch.png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return out_dir / "time_per_epoch.png"
