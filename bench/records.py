"""Tidy records of a study, rebuilt from the finished trials' files (never appended to in place).

`records.csv` (long form): one row per trial, stage, epoch and metric, swept parameters as columns. `trials.csv`:
one row per trial with its final metrics, time per epoch, total hours, images seen and the speed-up against the
study's baseline, and the learned gate (bench/report/gate.py: the best trivial baseline's value of the quality
metric, the ratio to it, `learned`), and `stale` (True: a trial whose point the study's last `bench run` did not
ask for, since edited out of the file; other seeds of a current point are not stale; see `stale_keys`).
`trivial.csv`: one row per stage and trivial baseline with its scores. All are rebuilt from `trials/*/trial.json`
and the runs' `history.json` under a lock and replaced atomically, so a kill at any moment leaves either the old or
the new file, and a trial can never appear twice.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd

from model.atomicio import atomic_write_bytes, remove_stale_temporaries
from model.errors import ConfigError

from .locks import file_lock
from .report import cost, gate, stats

ID_COLUMNS = ["trial", "label", "seed", "stage", "transfer_source", "is_baseline"]
# the machine's load around a trial (bench/runner.py) and the trial's own wall and process CPU seconds
LOAD_COLUMNS = ["load_start", "workers_start", "load_end", "workers_end", "trial_seconds", "trial_cpu_seconds"]
RECORD_COLUMNS = ID_COLUMNS + ["target_stage", "epoch", "subset", "images_seen", "steps", "train_hours",
                               "train_cpu_hours", "metric", "value"]
TRIAL_COLUMNS = ID_COLUMNS + ["state", "reason", "optuna_trial", "epochs", "images_seen", "time_per_epoch_min",
                              "total_hours", "chain_hours", "speedup", "speedup_per_epoch", "stale"]


def read_json(path: Path):
    return json.loads(Path(path).read_text())


def finished_trials(study_dir: Path) -> list[dict]:
    out = [read_json(f) for f in (Path(study_dir) / "trials").glob("*/trial.json")]
    return sorted(out, key=lambda t: (t.get("index", 0), t["key"]))  # the study file's order


def _point_columns(trial: dict) -> dict:
    return {f"param:{k}": (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in trial["point"].items()}


# What every epoch records (the trainer's history), beside the evaluations' metrics; epoch_cpu_seconds: not in
# histories written before CPU time was.
EPOCH_METRICS = ("loss", "epoch_seconds", "images_per_second", "epoch_cpu_seconds")


def _metric_items(record: dict) -> list[tuple[str, float]]:
    items = [(k, record[k]) for k in EPOCH_METRICS if k in record]
    items += [(k, v) for k, v in record.get("metrics", {}).items() if isinstance(v, (int, float))]
    return items


def records_frame(study_dir: Path, trials: list[dict]) -> pd.DataFrame:
    rows = []
    for t in trials:
        if t["state"] != "complete":
            continue
        for run in t["chain"]:
            history = read_json(Path(study_dir) / "runs" / run["key"] / "history.json")
            for rec in history:
                base = {"trial": t["key"], "label": t["label"], "seed": t["seed"], "stage": run["stage"],
                        "transfer_source": run["transfer_source"], "is_baseline": t["is_baseline"],
                        "target_stage": run["stage"] == t["stage"], "epoch": rec["epoch"],
                        "subset": rec["subset"], "images_seen": rec["images_seen"], "steps": rec.get("steps"),
                        "train_hours": rec["train_seconds"] / 3600,
                        "train_cpu_hours": rec["train_cpu_seconds"] / 3600 if "train_cpu_seconds" in rec else None,
                        **_point_columns(t)}
                for metric, value in _metric_items(rec):
                    rows.append({**base, "metric": metric, "value": float(value)})
    return pd.DataFrame(rows, columns=None if rows else RECORD_COLUMNS)


def quality_metric(study_dir: Path) -> str:
    path = Path(study_dir) / "study.json"
    return read_json(path).get("quality_metric", "kid") if path.exists() else "kid"


def _trial_row(study_dir: Path, t: dict, quality: str) -> dict:
    row = {"trial": t["key"], "label": t["label"], "seed": t["seed"], "stage": t["stage"],
           "transfer_source": t["transfer_source"], "is_baseline": t["is_baseline"], "state": t["state"],
           "reason": t.get("reason", ""), "optuna_trial": t.get("optuna_trial"), **_point_columns(t),
           **{k: t[k] for k in ("timesteps", "terminal_alpha_bar", "terminal_snr") if k in t},
           # the trained stage's run, its config hash without the stage name: one run, whichever study holds it
           "run": t["chain"][-1]["key"].rsplit("-", 1)[-1] if t.get("chain") else None, "device": t.get("device"),
           **{k: t.get(k) for k in LOAD_COLUMNS if k in t}}
    if t["state"] != "complete":
        return row
    target = t["chain"][-1]
    history = read_json(Path(study_dir) / "runs" / target["key"] / "history.json")
    chain_seconds = sum(read_json(Path(study_dir) / "runs" / r["key"] / "history.json")[-1]["train_seconds"]
                        for r in t["chain"])
    last = history[-1]
    evaluated = [r for r in history if r.get("metrics")]
    row.update({
        "epochs": last["epoch"], "images_seen": last["images_seen"], "steps": last["steps"],
        "num_parameters": t["num_parameters"],
        "time_per_epoch_min": float(np.mean([r["epoch_seconds"] for r in history])) / 60,
        "total_hours": last["train_seconds"] / 3600, "chain_hours": chain_seconds / 3600,
        "final_loss": last["loss"],
    })
    if all("epoch_cpu_seconds" in r for r in history):  # process CPU time (model/trainer.py), beside wall time
        row.update(cpu_hours=last["train_cpu_seconds"] / 3600,
                   cpu_per_epoch_min=float(np.mean([r["epoch_cpu_seconds"] for r in history])) / 60,
                   wall_per_cpu=(last["train_seconds"] / last["train_cpu_seconds"]) if last["train_cpu_seconds"]
                   else None)
    final = evaluated[-1]["metrics"] if evaluated else {}
    row.update({k: v for k, v in final.items() if isinstance(v, (int, float, str))})
    row.update(gate.gate(gate.run_trivial(Path(study_dir) / "runs" / target["key"]), final, quality))
    return row


def _speedups(df: pd.DataFrame) -> pd.DataFrame:
    """speedup = baseline total hours / this trial's total hours (and the same per epoch).

    A trial's baseline is the mean of the baseline trials that train the same stage (e.g. the from-scratch
    run of the same target, or batch learning of the same task), over their seeds. `speedup_clock` says which
    hours: `cpu` (process CPU time, which a busy machine hardly bends) where every trial of the stage ran on the
    CPU and recorded it, else `wall` (on CUDA the step times are synchronised wall time).
    """
    df["speedup"] = np.nan
    df["speedup_per_epoch"] = np.nan
    df["speedup_clock"] = None
    done = df["state"] == "complete"
    base = df[done & df["is_baseline"].astype(bool) & ~df["stale"]]  # the study's own baseline, not a stale one
    for stage in df.loc[done, "stage"].unique():
        here = df.index[done & (df["stage"] == stage)]
        match = base[base["stage"] == stage]
        if match.empty:
            continue
        on_cpu = ("cpu_hours" in df and df.loc[here, "cpu_hours"].notna().all()
                  and (df.loc[here, "device"].astype(str) == "cpu").all())
        total, per_epoch = ("cpu_hours", "cpu_per_epoch_min") if on_cpu else ("total_hours", "time_per_epoch_min")
        df.loc[here, "speedup"] = match[total].mean() / df.loc[here, total]
        df.loc[here, "speedup_per_epoch"] = match[per_epoch].mean() / df.loc[here, per_epoch]
        df.loc[here, "speedup_clock"] = "cpu" if on_cpu else "wall"
    return df


def _contention(df: pd.DataFrame) -> pd.DataFrame:
    """`contended`: a CPU trial whose training wall/CPU ratio is above stats.CONTENDED_RATIO x the median of the
    study's CPU trials (it was timed on a busy machine); None where not measured or not on the CPU."""
    df["contended"] = None
    if "wall_per_cpu" not in df:
        return df
    cpu = (df["state"] == "complete") & (df["device"].astype(str) == "cpu") & df["wall_per_cpu"].notna()
    if cpu.any():
        df.loc[cpu, "contended"] = stats.contended(df.loc[cpu, "wall_per_cpu"], pd.Series(1.0, index=df.index[cpu]))
    return df


def trials_frame(study_dir: Path, trials: list[dict]) -> pd.DataFrame:
    quality = quality_metric(study_dir)
    df = pd.DataFrame([_trial_row(study_dir, t, quality) for t in trials])
    if df.empty:
        return pd.DataFrame(columns=TRIAL_COLUMNS)
    df["stale"] = df["trial"].isin(stale_keys(study_dir, df["trial"]))
    return _contention(_speedups(df))


def with_cost(table: pd.DataFrame, records: pd.DataFrame, trivial: pd.DataFrame, quality: str) -> pd.DataFrame:
    """trials.csv's cost-to-target columns (bench/report/cost.py: `to_<baseline|trivial>_<epoch|images|steps|
    hours|cpu_hours>`, NaN: not reached) added to `table`."""
    if table.empty or "stage" not in table:
        return table
    return table.join(cost.per_trial(table, records, trivial, quality))


def point_id(point: dict) -> str:
    """A sweep point (axis -> value) as one comparable string: the seed-free identity of a config."""
    return json.dumps(point, sort_keys=True, default=str)


def stale_keys(study_dir: Path, finished, current=None) -> list[str]:
    """The keys among `finished` (trial keys with a trial.json) whose point the study no longer asks for: not
    among `current` (point_id of each point of the study file as loaded now), by default the `points` the last
    `bench run` of the folder wrote into study.json. Seeds are replications, not experiments: a finished seed of
    a point the file still has is never stale, whatever `--seeds` the last call named. Stale trials stay on disk
    and in trials.csv (column `stale`), apart from the report's tables (bench/report/tables.py). A folder written
    before study.json recorded its points has none."""
    if current is None:
        path = Path(study_dir) / "study.json"
        current = read_json(path).get("points") if path.exists() else None
        if current is None:
            return []
    current = set(current)
    out = []
    for key in finished:
        trial = Path(study_dir) / "trials" / key / "trial.json"
        point = read_json(trial).get("point") if trial.exists() else None
        if point is not None and point_id(point) not in current:
            out.append(key)
    return out


def trivial_frame(study_dir: Path, trials: list[dict]) -> pd.DataFrame:
    """One row per stage and trivial baseline (per distinct evaluation setting) of the complete trials."""
    rows, seen = [], set()
    for t in trials:
        if t["state"] != "complete" or t["chain"][-1]["key"] in seen:
            continue
        seen.add(t["chain"][-1]["key"])
        for name, metrics in gate.run_trivial(Path(study_dir) / "runs" / t["chain"][-1]["key"]).items():
            rows.append({"stage": t["stage"], "trivial": name, **metrics})
    df = pd.DataFrame(rows, columns=None if rows else ["stage", "trivial"])
    return df.drop_duplicates(ignore_index=True)


def _write_csv(path: Path, df: pd.DataFrame) -> None:
    buf = io.StringIO()
    df.to_csv(buf, index=False)
    atomic_write_bytes(path, lambda f: f.write(buf.getvalue().encode()), fault_site="records-rename")


def rebuild(study_dir: Path, lock=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rewrite records.csv, trials.csv and trivial.csv from the finished trials (atomic, under the study lock).

    `lock`: a context manager to hold instead of the flock on `.records.lock` (bench/claims.py: the database's
    lock when workers on several machines share the folder)."""
    study_dir = Path(study_dir)
    with lock if lock is not None else file_lock(study_dir / ".records.lock"):
        remove_stale_temporaries(study_dir)  # a killed writer's half-written tables
        trials = finished_trials(study_dir)
        records = records_frame(study_dir, trials)
        trivial = trivial_frame(study_dir, trials)
        table = with_cost(trials_frame(study_dir, trials), records, trivial, quality_metric(study_dir))
        _write_csv(study_dir / "records.csv", records)
        _write_csv(study_dir / "trials.csv", table)
        _write_csv(study_dir / "trivial.csv", trivial)
    return records, table


def published_copy(study_dir: Path) -> None:
    """Refuse, in one line, a study folder that holds only published tables (results/reference/*): the report
    is rebuilt from the trial files `bench run` writes, which such a copy leaves out."""
    if (study_dir / "trials.csv").exists() and not (study_dir / "trials").is_dir():
        raise ConfigError(f"{study_dir}: a published copy (trials.csv and report.md, no trials/ folder): its "
                          f"report.md is final; `bench run` the study into a results folder of your own to get one "
                          f"that `bench report` and `bench status` can read")
