"""The learned gate: a trial has *learned* only when its final model beats the best trivial baseline of its
task (model/baselines.py: the gray condition copied, the hole filled with the known mean colour, edge
replication, biharmonic inpainting) on the study's quality metric.

A comparison between two models that both score worse than copying their input compares noise with noise,
so the findings, the transfer table and the report draw no verdict from a comparison that involves an
unlearned trial. Each training run keeps its baselines' scores in `runs/<run>/trivial.json` (computed once
on the run's own evaluation settings; the values themselves are cached per data, task and settings under
the cache root), so a copied study folder reports them without the data.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from model.checkpoint import atomic_write_bytes, remove_stale_temporaries

TRIVIAL_FILE = "trivial.json"
LOWER_IS_BETTER = {"fid", "kid", "l1", "l1_hole", "l1_mmse", "l1_hole_mmse", "val_loss"}
TRIVIAL_NAMES = {"gray_copy": "gray copy", "mean_fill": "mean fill", "edge_replication": "edge replication",
                 "biharmonic": "biharmonic inpainting"}
GATE_COLUMNS = ["trivial_best", "ratio_to_trivial", "learned"]  # plus f"trivial_{quality}"


def trivial_name(key: str) -> str:
    return TRIVIAL_NAMES.get(key, key.replace("_", " "))


def run_trivial(run_dir: Path, device: str = "auto", compute: bool = True) -> dict[str, dict]:
    """{baseline: metrics} of a training run's task and evaluation settings, from `trivial.json`.

    When the file is missing (a study folder written before the gate) and `compute` is set, the scores are
    computed from the run's config.json (needs its data) and the file is written; {} without a config.
    """
    path = Path(run_dir) / TRIVIAL_FILE
    if compute:  # a finished run is not trained again, so nothing else clears what a killed writer left here
        remove_stale_temporaries(Path(run_dir))
    if path.exists():
        return json.loads(path.read_text())["scores"]
    if not compute or not (Path(run_dir) / "config.json").exists():
        return {}
    from model.baselines import trivial_scores
    from model.config import RunConfig

    cfg = RunConfig.model_validate_json((Path(run_dir) / "config.json").read_text())
    scores = trivial_scores(cfg, device=device)
    payload = json.dumps({"scores": scores}, indent=1).encode()
    atomic_write_bytes(path, lambda f: f.write(payload))
    return scores


def better(a: float, b: float, quality: str) -> bool:
    """a strictly better than b on `quality` (lower is better for FID, KID, L1; higher for PSNR, SSIM)."""
    return a < b if quality in LOWER_IS_BETTER else a > b


def best_trivial(scores: dict[str, dict], quality: str) -> tuple[str, float] | None:
    """(name, value) of the baseline with the best `quality`, or None when none has it."""
    have = [(k, float(m[quality])) for k, m in scores.items() if _finite(m.get(quality))]
    if not have:
        return None
    best = have[0]
    for item in have[1:]:
        best = item if better(item[1], best[1], quality) else best
    return best


def gate(scores: dict[str, dict], final: dict, quality: str) -> dict:
    """The gate's columns for one trial: trivial_best, trivial_<quality>, ratio_to_trivial, learned.

    learned is None (unknown) when the model's or the baselines' quality metric was not computed.
    """
    best, value = best_trivial(scores, quality), final.get(quality)
    if best is None or not _finite(value):
        return {"trivial_best": best[0] if best else None, f"trivial_{quality}": best[1] if best else None,
                "ratio_to_trivial": None, "learned": None}
    return {"trivial_best": best[0], f"trivial_{quality}": best[1],
            "ratio_to_trivial": float(value) / best[1] if best[1] else None,
            "learned": better(float(value), best[1], quality)}


def _finite(v) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def learned_flags(df: pd.DataFrame) -> pd.Series:
    """trials.csv's `learned` column as True / False / None (unknown), whatever pandas read it as."""
    col = df["learned"] if "learned" in df else pd.Series(None, index=df.index, dtype=object)
    return col.map(lambda v: {"true": True, "false": False}.get(str(v).strip().lower())).astype(object)


def unlearned(df: pd.DataFrame) -> pd.DataFrame:
    """The complete trials whose final model did not beat the best trivial baseline."""
    done = df[df["state"] == "complete"] if "state" in df else df
    return done[learned_flags(done) == False]  # noqa: E712 (None is neither)


def unlearned_line(df: pd.DataFrame, quality: str, names: pd.Series | None = None) -> str | None:
    """One line naming the unlearned trials (for the end of `bench run`), or None when every trial learned.
    `names`: each row's short config name (report/labels.py), else its raw label."""
    bad = unlearned(df)
    if bad.empty:
        return None
    shown = names if names is not None else df["label"]
    names = "; ".join(f"{f'{r.stage}: ' if df['stage'].nunique() > 1 else ''}{shown[i]} seed {r.seed}"
                      for i, r in bad.head(4).iterrows())
    more = "; ..." if len(bad) > 4 else ""
    total = int((df["state"] == "complete").sum()) if "state" in df else len(df)
    return (f"{len(bad)} of {total} trials did not learn (final {quality} no better than the best trivial "
            f"baseline: {names}{more}): no conclusion about their quality follows at this budget")


def study_line(study_dir: Path) -> str | None:
    """`unlearned_line` of a study folder's trials.csv (None when it has none or every trial learned)."""
    path, meta = Path(study_dir) / "trials.csv", Path(study_dir) / "study.json"
    try:
        df = pd.read_csv(path)
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return None
    info = json.loads(meta.read_text()) if meta.exists() else {}
    df = df[df["stale"].astype(str) != "True"] if "stale" in df else df  # points the study no longer has
    from .labels import short_labels

    names = short_labels(df, info) if "stage" in df and len(df) else None
    return unlearned_line(df, info.get("quality_metric", "kid"), names)
