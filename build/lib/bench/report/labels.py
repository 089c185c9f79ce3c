"""Short names of a study's configs, as the report's tables, legends, findings and file names show them.

A config is named by the ablation axes that vary within its stage only: `N=4, E=40`, `scratch`,
`from face_inpaint`, `T=1200, dropout=0.1` (the point's raw label, `stage=face_inpaint,transfer_source=
scratch,subsets=4,...`, stays the key in trials.csv). Well-known axes get the paper's letters (SHORT); others
their key's last part. A study file may name its points itself (`sweep.names`, bench/study.py): those names win.

Axes that only follow from others (`sweep.follows`, e.g. paper.yaml's `eval.every_epochs`, set by N and E) are
settings, not ablation axes: they are left out of names, ablation tables and optuna-dashboard's parameters.
Study folders written before `follows` existed treat their swept `eval.*` axes so (evaluation settings do
not change what a config trains).
"""

from __future__ import annotations

import math
import re

import pandas as pd

SHORT = {"train.subsets": "N", "train.epochs_per_subset": "E", "diffusion.timesteps": "T",
         "model.dropout": "dropout", "diffusion.prediction": "target", "diffusion.loss_weighting": "weighting",
         "diffusion.noise_levels": "noise levels"}


def follows(meta: dict) -> list[str]:
    """The swept axes that only follow from others (study.json's `follows`; absent: the `eval.*` axes)."""
    axes = meta.get("axes", [])
    if "follows" in meta:
        return [a for a in meta["follows"] if a in axes]
    return [a for a in axes if a.startswith("eval.")]


def ablation_axes(meta: dict) -> list[str]:
    """The swept axes a config is compared along within a stage: all but `stage` and the following ones."""
    skip = set(follows(meta)) | {"stage"}
    return [a for a in meta.get("axes", []) if a not in skip]


def axis_name(axis: str) -> str:
    """`train.subsets` -> `N`; an axis without a short name -> its key's last part (`model.lr` -> `lr`)."""
    return SHORT.get(axis, axis.split(".")[-1])


def _value(v) -> str:
    """An axis value as the study file wrote it (CSV floats that are whole numbers as integers)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "null"
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:  # 1e30 stays 1e+30
        return str(int(v))
    return str(v)


def value_text(axis: str, value) -> str:
    """One axis value as a name part: `N=4`, `scratch`, `from face_inpaint`."""
    if axis == "transfer_source":
        return "scratch" if value == "scratch" else f"from {value}"
    return f"{axis_name(axis)}={_value(value)}"


def file_stem(name: str) -> str:
    """A short name as a file-name part: `N=4, E=40` -> `N4_E40`."""
    return re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9.-]+", "_", name.replace("=", ""))).strip("_")[:60] or "config"


def _names(rows: pd.DataFrame, axes: list[str]) -> pd.Series:
    cols = [a for a in axes if f"param:{a}" in rows and rows[f"param:{a}"].map(_value).nunique() > 1]
    return rows.apply(lambda r: ", ".join(value_text(a, r[f"param:{a}"]) for a in cols), axis=1).astype(object)


def short_labels(trials: pd.DataFrame, meta: dict) -> pd.Series:
    """Per row of trials.csv (columns label, stage, param:<axis>): its config's short name.

    Names are computed per stage from every trial of it (finished or not), so a config keeps its name while
    a study runs. Should two configs of a stage differ only in a following axis, those axes are named too; a
    stage with one config is named after the stage (`base` for a study without stages)."""
    given = meta.get("names") or {}
    out = pd.Series("", index=trials.index, dtype=object)
    several = trials["stage"].nunique() > 1
    for stage, rows in trials.groupby("stage", sort=False):
        for axes in (ablation_axes(meta), ablation_axes(meta) + follows(meta)):
            names = _names(rows, axes) if len(rows) else pd.Series(dtype=object)
            if rows.groupby(names)["label"].nunique().max() <= 1:  # one name, one config
                break
        else:  # points that differ only in axes the report does not know: their raw labels
            names = rows["label"].astype(str).str.replace(",", ", ")
        names = names.where(names != "", stage if several else "base")
        out[rows.index] = [given.get(label) or n for label, n in zip(rows["label"], names, strict=True)]
    return out


def study_names(study) -> dict[str, str]:
    """trial key -> the short name of its config, for a loaded `bench.study.Study` (the terminal's tables speak
    the report's names: `bench run`, `bench status`, `--dry-run`)."""
    rows = pd.DataFrame([{"label": t.label, "stage": t.run.stage, **{f"param:{a}": v for a, v in t.point.items()}}
                         for t in study.trials])
    if rows.empty:
        return {}
    meta = {"axes": study.axes, "follows": study.follows, "names": study.names}
    return dict(zip([t.key for t in study.trials], short_labels(rows, meta), strict=True))
