"""The report's tables: a study folder's trials aggregated per config (over seeds) and per swept axis.

Every builder returns two frames: the raw numbers (written as CSV, for anyone to re-plot or to check) and
the same rows formatted for markdown. Nothing here is measured again: it all comes from `trials.csv` and
`records.csv`, so the report can always be rebuilt from a copied study folder.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from model.errors import ConfigError

from .. import records
from . import labels
from .gate import LOWER_IS_BETTER, learned_flags, trivial_name  # noqa: F401 (LOWER_IS_BETTER re-exported)

# (trials.csv column, table header); KID is shown x 10^3
QUALITY = [("fid", "FID"), ("kid", "KID×10³"), ("l1", "L1"), ("psnr", "PSNR (dB)"), ("ssim", "SSIM"),
           ("l1_hole", "L1 (hole)"), ("psnr_hole", "PSNR hole (dB)"), ("ssim_hole", "SSIM (hole)"),
           # of the mean of eval.mmse_samples draws (the posterior-mean estimate), when a study asks for it
           ("l1_mmse", "L1 of mean"), ("psnr_mmse", "PSNR of mean (dB)"), ("ssim_mmse", "SSIM of mean"),
           ("val_loss", "held-out loss")]  # model/heldout.py, when eval.loss_levels > 0
SCALE = {"kid": 1e3, "kid_std": 1e3}


def quality_name(metric: str) -> str:
    """A metric's name as tables, figures and findings show it (`kid` -> `KID×10³`; unknown: itself)."""
    return dict(QUALITY).get(metric, metric)
FID_RELIABLE_N = 2048


@dataclass
class StudyData:
    dir: Path
    meta: dict  # study.json
    trials: pd.DataFrame  # trials.csv, in sweep order
    records: pd.DataFrame  # records.csv (may be empty)
    trivial: pd.DataFrame = field(default_factory=pd.DataFrame)  # trivial.csv: stage, trivial, metrics
    stale: pd.DataFrame = field(default_factory=pd.DataFrame)  # trials the study no longer asks for (_split_stale)

    @property
    def learned(self) -> pd.Series:
        """Per complete trial: True / False / None (unknown), the learned gate (bench/report/gate.py)."""
        return learned_flags(self.complete)

    def unlearned(self, labels=None) -> list[str]:
        """Labels (of `labels`, default all) with at least one complete trial that did not learn."""
        done = self.complete
        bad = done[self.learned == False]["label"]  # noqa: E712 (None is unknown, not False)
        return [x for x in dict.fromkeys(bad) if labels is None or x in set(labels)]

    def name_of(self, label: str) -> str:
        """A config's short name (labels.py) from its raw label; the label itself when unknown."""
        names = self.trials.drop_duplicates("label").set_index("label").get("name")
        return str(names[label]) if names is not None and label in names.index else str(label)

    @property
    def quality(self) -> str:
        return self.meta.get("quality_metric", "kid")

    @property
    def complete(self) -> pd.DataFrame:
        return self.trials[self.trials["state"] == "complete"]

    @property
    def multi_seed(self) -> bool:
        return bool((self.complete.groupby("label")["seed"].nunique() > 1).any())

    @property
    def has_fid(self) -> bool:
        fid = self.complete.get("fid", pd.Series(dtype=float))
        return bool(pd.to_numeric(fid, errors="coerce").notna().any())

    @property
    def has_transfer(self) -> bool:
        return bool((self.complete["transfer_source"].astype(str) != "scratch").any())


def read_csv(path: Path) -> pd.DataFrame:
    """A study folder's table, or an empty frame when it is absent or empty; `records.csv` is also found as
    `records.csv.gz`, as results/reference publishes it (pandas reads the gzip as is)."""
    path = Path(path)
    if not path.exists() and Path(f"{path}.gz").exists():
        path = Path(f"{path}.gz")
    try:
        return pd.read_csv(path)
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return pd.DataFrame()


def load(study_dir: Path, include_stale: bool = False) -> StudyData:
    """The study folder's tables; trials its last `bench run` did not ask for (stale: a point since
    removed from the study file) are kept apart in `stale`, and in `trials` / `records` only with include_stale."""
    study_dir = Path(study_dir)
    if not (study_dir / "study.json").exists():
        raise ConfigError(f"{study_dir}: not a study folder (no study.json; run `bench run <file>` first)")
    meta = json.loads((study_dir / "study.json").read_text())
    if not (study_dir / "trials.csv").exists():
        records.rebuild(study_dir)
    trials = read_csv(study_dir / "trials.csv")
    if "learned" not in trials and (trials.get("state") == "complete").any() and (study_dir / "trials").is_dir():
        records.rebuild(study_dir)  # written before the learned gate: score its trivial baselines once
        trials = read_csv(study_dir / "trials.csv")
    if trials.empty:
        file = meta.get("file", "<file>")
        raise ConfigError(f"{study_dir}: no finished trials yet (run `bench run {file}` first)")
    index = [records.read_json(study_dir / "trials" / k / "trial.json").get("index") for k in trials["trial"]]
    if None in index:  # folders written before trial.json had the study file's order: the run order
        index = trials["optuna_trial"] if "optuna_trial" in trials else pd.Series(range(len(trials)))
    trials = trials.assign(_order=pd.Series(index, dtype=float).fillna(np.inf).to_numpy())
    trials = trials.sort_values(["_order", "seed"], kind="stable")
    trials = trials.drop(columns="_order").reset_index(drop=True)
    trials["is_baseline"] = trials["is_baseline"].astype(str).str.lower() == "true"
    trials, stale, rec = _split_stale(study_dir, trials, read_csv(study_dir / "records.csv"), include_stale)
    trials["name"] = labels.short_labels(trials, meta)  # `N=4, E=40`: what every table and legend shows
    return StudyData(study_dir, meta, trials, rec, read_csv(study_dir / "trivial.csv"), stale=stale)


def _split_stale(study_dir: Path, trials: pd.DataFrame, rec: pd.DataFrame, include: bool):
    """(trials, stale trials, records): unless `include`, the stale trials (records.stale_keys) and their
    records leave the frames every table, finding, claim and figure reads."""
    stale = trials[trials["trial"].isin(records.stale_keys(study_dir, trials["trial"]))].reset_index(drop=True)
    if include or stale.empty:
        return trials, stale, rec
    keep = ~trials["trial"].isin(stale["trial"])
    rec = rec[~rec["trial"].isin(stale["trial"])].reset_index(drop=True) if "trial" in rec else rec
    return trials[keep].reset_index(drop=True), stale, rec


# ---------------------------------------------------------------- formatting
def fmt(v, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)) or (isinstance(v, float) and v.is_integer() and abs(v) < 1e15):
        return f"{int(v):,}" if abs(v) >= 10_000 else str(int(v))
    if isinstance(v, (float, np.floating)):
        return f"{v:.{digits}g}"
    return str(v)


def fmt_value(v) -> str:
    """An axis value as the study file wrote it (missing -> null)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "null"
    return fmt(v)


def pm(mean, std, digits: int = 4) -> str:
    if std is None or (isinstance(std, float) and math.isnan(std)):
        return fmt(mean, digits)
    if abs(std) <= 1e-9 * abs(mean):  # floating-point noise (e.g. KID's std over a single subset)
        return f"{fmt(mean, digits)} ± 0"
    return f"{fmt(mean, digits)} ± {fmt(std, 2)}"


def md_table(df: pd.DataFrame) -> str:
    """A GitHub markdown table (no `tabulate` dependency)."""
    def cell(v) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(c) for c in df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def model_name(row) -> str:
    """A config's short name (bench/report/labels.py: `N=4, E=40`), ' (baseline)' for its stage's baseline;
    `row`: a trials.csv row or a per_config row. Rows without a name column show their raw label."""
    name = row.get("name") if hasattr(row, "get") else None
    if not isinstance(name, str) or not name:
        name = str(row["label"]).replace(",", ", ")
    return name + " (baseline)" if row["is_baseline"] else name


# ---------------------------------------------------------------- aggregation over seeds
def per_config(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """One row per config (label): its first identifying fields, n seeds, mean and std of `columns`."""
    ident = ["label", "name", "stage", "transfer_source", "is_baseline"] + [c for c in df if c.startswith("param:")]
    ident = [c for c in ident if c in df]
    g = df.groupby("label", sort=False)
    out = g[ident].first().reset_index(drop=True)
    out["seeds"] = g["seed"].nunique().to_numpy()
    for c in columns:  # a column the trials lack comes out as NaN
        values = pd.to_numeric(df.get(c, pd.Series(np.nan, index=df.index)), errors="coerce")
        values = values.groupby(df["label"], sort=False)
        out[f"{c}_mean"] = values.mean().to_numpy()
        out[f"{c}_std"] = values.std(ddof=1).to_numpy()
    return out


def _present(df: pd.DataFrame, cols: list[str]) -> list[str]:
    return [c for c in cols if c in df and pd.to_numeric(df[c], errors="coerce").notna().any()]


def learned_cell(flags: pd.Series) -> str:
    """'yes' / 'no' / 'k/n seeds' over a config's trials; '–' when the gate could not be computed."""
    known = [f for f in flags if f is not None]
    if not known:
        return "–"
    k = sum(known)
    return "yes" if k == len(flags) else "no" if k == 0 else f"{k}/{len(flags)} seeds"


def _gate_columns(data: StudyData, raw: pd.DataFrame) -> None:
    """Adds learned (text) and ratio_to_trivial (mean over seeds) to a per-config frame, in place."""
    done = data.complete
    flags = data.learned.groupby(done["label"], sort=False)
    raw["learned"] = raw["label"].map({label: learned_cell(f) for label, f in flags})
    ratio = pd.to_numeric(done.get("ratio_to_trivial", pd.Series(np.nan, index=done.index)), errors="coerce")
    raw["ratio_to_trivial"] = raw["label"].map(ratio.groupby(done["label"], sort=False).mean())


def _trivial_rows(data: StudyData, metrics: list[str]) -> pd.DataFrame:
    """The trivial baselines in quality_table's raw layout (label 'trivial: <name>', is_trivial)."""
    t = data.trivial
    if t.empty:
        return pd.DataFrame()
    several = t["stage"].nunique() > 1
    out = pd.DataFrame({
        "label": [f"trivial: {trivial_name(n)}" + (f" ({s})" if several else "")
                  for n, s in zip(t["trivial"], t["stage"], strict=True)],
        "name": [f"trivial: {trivial_name(n)}" for n in t["trivial"]],
        "stage": t["stage"], "is_baseline": False, "is_trivial": True})
    for m in metrics + ["kid_std", "n_samples"]:
        out[f"{m}_mean"] = pd.to_numeric(t.get(m, pd.Series(np.nan, index=t.index)), errors="coerce").to_numpy()
        out[f"{m}_std"] = np.nan
    return out


def _model_columns(raw: pd.DataFrame) -> pd.DataFrame:
    """The Model column of a per-config frame (short names), after a Stage column when there are stages."""
    view = pd.DataFrame({"Model": [model_name(r) for _, r in raw.iterrows()]})
    if raw["stage"].nunique() > 1:  # short names are unique within a stage only
        view.insert(0, "Stage", raw["stage"].to_list())
    return view


def quality_table(data: StudyData) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per config: the quality metrics, whether it learned (beat the best trivial baseline of its stage) and
    the ratio of its quality metric to that baseline's; then one row per trivial baseline and stage."""
    done = data.complete
    metrics = _present(done, [m for m, _ in QUALITY])
    se = [f"{m}_se" for m in metrics if f"{m}_se" in done]  # bootstrap over the evaluated samples (evaluate.py)
    raw = per_config(done, metrics + se + ["kid_std", "n_samples"])
    _gate_columns(data, raw)
    raw["is_trivial"] = False
    trivial = _trivial_rows(data, metrics)
    n_col = done["n_samples"] if "n_samples" in done else pd.Series(dtype=float)
    ns = sorted(pd.to_numeric(n_col, errors="coerce").dropna().unique())
    if not trivial.empty:
        raw = pd.concat([raw, trivial], ignore_index=True)
        order = {st: i for i, st in enumerate(dict.fromkeys(raw["stage"]))}  # each stage's trivial rows after it
        raw = raw.iloc[raw["stage"].map(order).argsort(kind="stable")].reset_index(drop=True)
    view = _model_columns(raw)
    if data.multi_seed:
        view["Seeds"] = [fmt(v) for v in raw["seeds"]]
    for m, header in QUALITY:
        if m not in metrics:
            continue
        k = SCALE.get(m, 1.0)
        if m == "fid":
            header = f"FID@{int(ns[0])}" if len(ns) == 1 else "FID"
        std = raw[f"{m}_std"]
        if not data.multi_seed and f"{m}_se_mean" in raw:
            std = raw[f"{m}_se_mean"]  # one seed: the bootstrap standard error over the evaluated samples
        elif m == "kid" and not data.multi_seed and "kid_std_mean" in raw:
            std = raw["kid_std_mean"]  # runs recorded before the bootstrap: the estimator's std over subsets
        view[header] = [pm(a * k, b * k) for a, b in zip(raw[f"{m}_mean"], std, strict=True)]
    if len(ns) > 1:
        view["N"] = [fmt(v) for v in raw["n_samples_mean"]]
    if data.learned.notna().any():
        q = quality_name(data.quality)
        view[f"{q} ÷ best trivial"] = [fmt(v, 3) for v in raw["ratio_to_trivial"]]
        view["Learned"] = raw["learned"].fillna("").to_list()
    return raw, view


EFFICIENCY = [("epochs", "Epochs"), ("images_seen", "Images seen"), ("steps", "Optimizer steps"),
              ("time_per_epoch_min", "Time/Epoch (min)"), ("total_hours", "Total Time (h)"),
              ("speedup", "Speed-up (×)"), ("speedup_per_epoch", "Speed-up/epoch (×)"),
              ("chain_hours", "Incl. source training (h)"), ("sample_seconds_per_image", "Sampling (s/img)"),
              ("ddpm_seconds_per_image", "DDPM T steps (s/img)")]


def efficiency_table(data: StudyData) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Time per epoch, total time and speed-up per config.

    Speed-up (as in trials.csv): the mean total hours of the stage's baseline trials / this config's mean
    total hours over its seeds (process CPU hours where trials.csv's `speedup_clock` is `cpu`). With one seed
    this is exactly trials.csv's `speedup`; with several it is the ratio of the means (the baseline's own is
    1), and `speedup_trial_mean` keeps the mean of the per-trial ratios.
    """
    done = data.complete
    measured = [c for c, _ in EFFICIENCY if not c.startswith("speedup")]
    raw = per_config(done, measured + ["num_parameters", "speedup"])
    raw = raw.rename(columns={"speedup_mean": "speedup_trial_mean", "speedup_std": "speedup_trial_std"})
    clock = done.get("speedup_clock", pd.Series(None, index=done.index, dtype=object))  # records.py: cpu or wall
    for c, wall, cpu in (("speedup", "total_hours", "cpu_hours"),
                         ("speedup_per_epoch", "time_per_epoch_min", "cpu_per_epoch_min")):
        src = done[cpu].where(clock == "cpu", done[wall]) if cpu in done else done[wall]  # as trials.csv's
        base = src[done["is_baseline"]].groupby(done["stage"]).mean()
        raw[c] = raw["stage"].map(base).astype(float) / src.groupby(done["label"], sort=False).mean().to_numpy()
    shown = _present(raw.rename(columns=lambda c: c.removesuffix("_mean")), [c for c, _ in EFFICIENCY])
    if not data.has_transfer and "chain_hours" in shown:
        shown.remove("chain_hours")
    view = _model_columns(raw)
    for c, header in EFFICIENCY:
        if c not in shown:
            continue
        if c.startswith("speedup"):
            view[header] = [("–" if math.isnan(v) else f"{v:.2f}") for v in raw[c]]
        elif c in ("epochs", "images_seen", "steps"):
            view[header] = [fmt(v) for v in raw[f"{c}_mean"]]
        else:
            view[header] = [pm(a, b, 3) for a, b in zip(raw[f"{c}_mean"], raw[f"{c}_std"], strict=True)]
    return raw, view


def ablation_tables(data: StudyData) -> dict[tuple[str, str], tuple[pd.DataFrame, pd.DataFrame]]:
    """Per (stage, axis): one row per value of an ablation axis that varies within the stage, mean over the
    stage's other configs and seeds. Stages differ in task and data, so no row mixes them; `stage` itself and
    the axes that only follow from others (labels.follows) are not ablation axes."""
    speedups = efficiency_table(data)[0].set_index("label")["speedup"]
    done = data.complete.assign(speedup=lambda d: d["label"].map(speedups))  # each config's speed-up
    learned = data.learned
    headers = dict(QUALITY) | dict(EFFICIENCY)
    out = {}
    for stage in dict.fromkeys(done["stage"]):
        here = done[done["stage"] == stage]
        metrics = _present(here, [data.quality] + [m for m, _ in QUALITY if m != data.quality][:4])
        effic = _present(here, ["time_per_epoch_min", "total_hours", "speedup"])
        for axis in labels.ablation_axes(data.meta):
            col = f"param:{axis}"
            if col not in here or here[col].map(fmt_value).nunique() < 2:
                continue
            key = here[col].map(fmt_value)
            g = here.groupby(key, sort=False)
            raw = pd.DataFrame({"stage": stage, axis: list(g.groups), "trials": g.size().to_numpy()})
            for c in metrics + effic:
                raw[c] = pd.to_numeric(here[c], errors="coerce").groupby(key, sort=False).mean().to_numpy()
            flags = learned[here.index].groupby(key, sort=False)
            raw["learned"] = [int((f == True).sum()) for _, f in flags]  # noqa: E712
            raw["gated"] = [int(f.notna().sum()) for _, f in flags]
            view = pd.DataFrame({labels.axis_name(axis): raw[axis], "Trials": raw["trials"]})
            for c in metrics + effic:
                scale = SCALE.get(c, 1.0)
                view[headers[c]] = [f"{v:.2f}" if c == "speedup" and not math.isnan(v) else fmt(v * scale)
                                    for v in raw[c]]
            if raw["gated"].any():
                view["Learned"] = [f"{k}/{n}" if n else "–" for k, n in zip(raw["learned"], raw["gated"],
                                                                         strict=True)]
            out[(stage, axis)] = (raw, view)
    return out


def failed_table(data: StudyData) -> pd.DataFrame:
    bad = data.trials[data.trials["state"] != "complete"]
    return pd.DataFrame({"Model": [model_name(r) for _, r in bad.iterrows()], "Seed": bad["seed"],
                         "Stage": bad["stage"], "State": bad["state"],
                         "Reason": bad.get("reason", pd.Series("", index=bad.index)).fillna("")})
