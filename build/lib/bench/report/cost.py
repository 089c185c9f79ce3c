"""Cost to reach a target: the paper's "Total Time at comparable FID", MLPerf's time to train.

Per trial, at the first evaluation whose quality metric is at least as good as a target: the epoch, images seen,
optimizer steps and training hours (wall, and process CPU where recorded) counted so far in the trained stage
(a transfer's source training is not included). Two targets per stage:
  - `baseline`: the final quality of the stage's baseline config, mean over its seeds (for the baseline's own
    seeds too: a seed below the mean reaches it only at the end, one above it not at all);
  - `trivial`: the best trivial baseline of the stage (bench/report/gate.py), i.e. where the model starts to
    beat copying its input.
A target never reached within the trial's evaluations is NaN ("not reached"); evaluations are sparse, so a
target reached between two of them counts at the later one (an upper bound, never an interpolation).

`per_trial` gives trials.csv's `to_<target>_<epoch|images|steps|hours|cpu_hours>` columns (bench/records.py);
`section` the report's table (mean and sd over the seeds that reached it, k/n seeds) and figure (one point per
seed). This replaces the transfer-only "epochs to reach" table with one for every study.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from .gate import LOWER_IS_BETTER, better, learned_flags, trivial_name

TARGETS = ("baseline", "trivial")
WHAT = ("epoch", "images", "steps", "hours", "cpu_hours")
_RECORD_COLUMN = {"epoch": "epoch", "images": "images_seen", "steps": "steps", "hours": "train_hours",
                  "cpu_hours": "train_cpu_hours"}
TOLERANCE = 1e-9  # relative: a value equal to the target up to round-off reaches it


def columns() -> list[str]:
    return [f"to_{t}_{w}" for t in TARGETS for w in WHAT]


def reaches(value: float, target: float, quality: str) -> bool:
    """value at least as good as target (direction from gate.LOWER_IS_BETTER), up to round-off."""
    slack = TOLERANCE * abs(target) + 1e-12
    return value <= target + slack if quality in LOWER_IS_BETTER else value >= target - slack


def first_reach(curve: pd.DataFrame, target: float, quality: str) -> dict:
    """{epoch, images, steps, hours, cpu_hours} at the first row of `curve` (one trial's evaluations: columns
    epoch, value and any of images_seen, steps, train_hours, train_cpu_hours) whose value reaches `target`;
    every entry NaN when none does (or the target is NaN)."""
    out = dict.fromkeys(WHAT, math.nan)
    if curve.empty or not math.isfinite(target):
        return out
    curve = curve.sort_values("epoch")
    hit = curve[[reaches(float(v), target, quality) for v in curve["value"]]]
    if hit.empty:
        return out
    row = hit.iloc[0]
    return {w: float(row[c]) if c in row and pd.notna(row[c]) else math.nan for w, c in _RECORD_COLUMN.items()}


def stage_targets(trials: pd.DataFrame, trivial: pd.DataFrame, quality: str) -> dict[str, dict]:
    """{stage: {"baseline": mean final quality of its baseline trials, "trivial": best trivial value,
    "trivial_name": which}} (NaN / None where the stage has no baseline or no trivial scores)."""
    done = trials[trials["state"] == "complete"] if "state" in trials else trials
    out = {}
    for stage, here in done.groupby("stage", sort=False):
        base = here[here["is_baseline"].astype(str).str.lower() == "true"]
        values = pd.to_numeric(base.get(quality, pd.Series(dtype=float)), errors="coerce").dropna()
        entry = {"baseline": float(values.mean()) if len(values) else math.nan, "trivial": math.nan,
                 "trivial_name": None}
        if not trivial.empty and quality in trivial:
            t = trivial[trivial["stage"] == stage].assign(v=lambda d: pd.to_numeric(d[quality], errors="coerce"))
            for name, v in zip(t["trivial"], t["v"], strict=True):
                if math.isfinite(v) and (not math.isfinite(entry["trivial"]) or better(v, entry["trivial"], quality)):
                    entry["trivial"], entry["trivial_name"] = float(v), name
        out[stage] = entry
    return out


def trial_curves(records: pd.DataFrame, quality: str) -> dict[str, pd.DataFrame]:
    """{trial key: its trained stage's evaluations of `quality`} from records.csv (a value column per row)."""
    if records.empty or "metric" not in records:
        return {}
    curves = records[(records["metric"] == quality) & (records["target_stage"].astype(str).str.lower() == "true")]
    return dict(tuple(curves.groupby("trial", sort=False)))


def reach_own_baseline(x: pd.DataFrame, b: pd.DataFrame, records: pd.DataFrame,
                       quality: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """x and b (rows paired by their `pair` column) with `to_baseline_*` recomputed per pair: the cost of each to
    reach the final quality of ITS OWN seed's baseline trial b (for b itself: its first evaluation as good as its
    final one), so a claim's seeds pair up (the paper's "epochs to reach the from-scratch quality")."""
    curves = trial_curves(records, quality)
    x, b = x.copy(), b.copy()
    target = pd.to_numeric(b.set_index("pair")[quality], errors="coerce")
    for df in (x, b):
        for i, row in df.iterrows():
            curve = curves.get(row["trial"])
            hit = first_reach(curve if curve is not None else pd.DataFrame(), float(target.get(row["pair"], math.nan)),
                              quality)
            for w, v in hit.items():
                df.at[i, f"to_baseline_{w}"] = v
    return x, b


def per_trial(trials: pd.DataFrame, records: pd.DataFrame, trivial: pd.DataFrame, quality: str) -> pd.DataFrame:
    """The `to_<target>_<what>` columns for each row of `trials` (trials.csv's layout), same index."""
    out = pd.DataFrame(np.nan, index=trials.index, columns=columns())
    targets = stage_targets(trials, trivial, quality)
    by_trial = trial_curves(records, quality)
    for i, row in trials.iterrows():
        curve = by_trial.get(row["trial"])
        if curve is None or row.get("state", "complete") != "complete":
            continue
        for target in TARGETS:
            hit = first_reach(curve, targets.get(row["stage"], {}).get(target, math.nan), quality)
            for w, v in hit.items():
                out.at[i, f"to_{target}_{w}"] = v
    return out


def per_config(done: pd.DataFrame, target: str) -> pd.DataFrame:
    """Per config (label, in order): seeds, seeds reached, mean and sd of each `to_<target>_<what>` over the
    seeds that reached it, and whether every seed learned (the gate)."""
    rows = []
    flags = learned_flags(done)
    for label, g in done.groupby("label", sort=False):
        row = {"stage": g["stage"].iloc[0], "label": label, "is_baseline": bool(g["is_baseline"].iloc[0]),
               "name": g["name"].iloc[0] if "name" in g else None,  # tables.model_name's short label
               "target": target, "seeds": g["seed"].nunique(),
               "reached": int(pd.to_numeric(g.get(f"to_{target}_epoch"), errors="coerce").notna().sum()),
               "unlearned": bool((flags[g.index] == False).any())}  # noqa: E712 (None: unknown)
        for w in WHAT:
            v = pd.to_numeric(g.get(f"to_{target}_{w}", pd.Series(np.nan, index=g.index)), errors="coerce")
            row[f"{w}_mean"], row[f"{w}_sd"] = v.mean(), v.std(ddof=1)
        rows.append(row)
    return pd.DataFrame(rows)


def _cell(mean: float, sd: float, digits: int = 3) -> str:
    from .tables import fmt

    if not math.isfinite(mean):
        return "–"
    return fmt(mean, digits) + (f" ± {fmt(sd, 2)}" if math.isfinite(sd) else "")


def table(data) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The report's table (raw, view) for a StudyData whose trials carry the `to_*` columns."""
    from .tables import SCALE, fmt, model_name, quality_name

    done = data.complete
    if f"to_{TARGETS[0]}_epoch" not in done:
        done = done.join(per_trial(done, data.records, data.trivial, data.quality))
    q, k = data.quality, SCALE.get(data.quality, 1.0)
    targets = stage_targets(done, data.trivial, q)
    raw = pd.concat([per_config(done, t) for t in TARGETS], ignore_index=True)
    if raw.empty:
        return raw, raw
    raw["target_value"] = [targets[s][t] for s, t in zip(raw["stage"], raw["target"], strict=True)]
    raw = raw[np.isfinite(raw["target_value"].astype(float))].reset_index(drop=True)
    cpu = raw["cpu_hours_mean"].notna().any()

    def target_name(r) -> str:
        what = ("baseline's final" if r["target"] == "baseline"
                else f"best trivial ({trivial_name(targets[r['stage']]['trivial_name'])})")
        return f"{what} {quality_name(q)} {fmt(r['target_value'] * k)}"

    def reached(r) -> str:
        if r["unlearned"]:
            return f"{r['reached']}/{r['seeds']} (did not learn: no verdict)"
        return f"{r['reached']}/{r['seeds']}" if r["reached"] else \
            f"not reached ({r['seeds']} seed{'' if r['seeds'] == 1 else 's'})"

    view = pd.DataFrame({
        "Stage": raw["stage"], "Target": [target_name(r) for _, r in raw.iterrows()],
        "Model": [model_name(r) for _, r in raw.iterrows()],
        "Seeds reached": [reached(r) for _, r in raw.iterrows()],
        "Epoch": [_cell(a, b) for a, b in zip(raw["epoch_mean"], raw["epoch_sd"], strict=True)],
        "Images seen": [_cell(a, b) for a, b in zip(raw["images_mean"], raw["images_sd"], strict=True)],
        "Optimizer steps": [_cell(a, b) for a, b in zip(raw["steps_mean"], raw["steps_sd"], strict=True)],
        "Training (h)": [_cell(a, b) for a, b in zip(raw["hours_mean"], raw["hours_sd"], strict=True)]})
    if cpu:
        view["CPU (h)"] = [_cell(a, b) for a, b in zip(raw["cpu_hours_mean"], raw["cpu_hours_sd"], strict=True)]
    return raw, view


def figure(data, out_dir: Path) -> Path | None:
    """Images seen to reach the stage baseline's final quality, one point per seed (filled: reached; an open
    marker at the images the trial trained on: not reached within them); one panel per stage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .tables import model_name, quality_name

    done = data.complete
    if "to_baseline_images" not in done:
        done = done.join(per_trial(done, data.records, data.trivial, data.quality))
    reached = done["to_baseline_images"].notna()
    stages = [s for s in dict.fromkeys(done["stage"]) if reached[done["stage"] == s].any()]
    if not stages:
        return None
    fig, axes = plt.subplots(1, len(stages), figsize=(4.2 * len(stages), 3.6), squeeze=False, sharey=False)
    for ax, stage in zip(axes[0], stages, strict=True):
        here = done[done["stage"] == stage]
        labels = list(dict.fromkeys(here["label"]))
        names = [model_name(here[here["label"] == lab].iloc[0]) for lab in labels]
        for x, lab in enumerate(labels):
            g = here[here["label"] == lab]
            hit = pd.to_numeric(g["to_baseline_images"], errors="coerce")
            jitter = np.linspace(-0.12, 0.12, len(g)) if len(g) > 1 else np.zeros(1)
            ax.scatter(x + jitter[hit.notna().to_numpy()], hit.dropna(), color="C0", s=22, zorder=3)
            miss = pd.to_numeric(g.loc[hit.isna(), "images_seen"], errors="coerce")
            if len(miss):  # drawn at the images the trial trained on: the target lies beyond them
                labelled = "not reached (images trained)" in ax.get_legend_handles_labels()[1]
                ax.scatter(x + jitter[hit.isna().to_numpy()], miss, facecolors="none", edgecolors="C3", s=28,
                           zorder=3, label=None if labelled else "not reached (images trained)")
        ax.set_xticks(range(len(labels)), [n[:28] for n in names], rotation=30, ha="right", fontsize=8)
        ax.set_xlim(-0.5, len(labels) - 0.5)
        ax.set_title(f"{stage}: images to the baseline's final {quality_name(data.quality)}", fontsize=9)
        ax.set_ylabel("images seen (one dot per seed)", fontsize=9)
        ax.set_ylim(bottom=0)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(out_dir) / "cost_to_target.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


NOTE = ("Per trial: the first evaluation whose {q} is at least as good as the target, and the epochs, images "
        "seen, optimizer steps and training hours of the trained stage up to it (source training of a transfer "
        "not included); mean ± sd over the seeds that reached it. Evaluations are sparse: a target reached "
        "between two evaluations counts at the later one. 'not reached': never within the trial's evaluations.")


def section(data, out: Path, csv: bool) -> str:
    """The report's "Cost to reach a target" section: the table, its CSV and the per-seed figure."""
    from .tables import md_table, quality_name

    raw, view = table(data)
    if raw.empty:
        return ""
    text = (f"## Cost to reach a target\n\n{NOTE.format(q=quality_name(data.quality))}\n\n{md_table(view)}")
    if csv:
        raw.to_csv(Path(out) / "report_cost_to_target.csv", index=False)
        text += f"\n\nNumbers: [report_cost_to_target.csv]({Path(out).name}/report_cost_to_target.csv)"
    path = figure(data, out)
    if path is not None:
        text += f"\n\n![cost to target]({Path(out).name}/{path.name})"
    return text
