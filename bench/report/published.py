"""`bench claims`: the paper-claims table across several studies' published folders (results/reference/*), which
hold only trials.csv, records.csv(.gz), trivial.csv and study.json.

Each study file is expanded again (at its folder's scale, --set and --seeds) for its claims and to name each
trial's trained run by `training_id`: the run's config (seed included) without the evaluation keys that change
neither the weights nor the final numbers, and its upstream run's id. Two studies that trained the same run (the
face-inpainting batch run of `paper` and `subsets`, evaluated every 40 and every 80 epochs) then give one pair
of runs to a claim, counted once (verdicts.claims_table).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd

from . import cost
from .tables import read_csv
from .verdicts import CLAIMS_NOTE, claims_table

# eval keys that change neither the trained weights (evaluation restores the training RNG) nor the final
# evaluation's numbers: two studies that differ only here trained and scored the same run
NOT_TRAINING = (("eval", "every_epochs"), ("eval", "save_images"), ("eval", "ddpm_timing_samples"))


def training_id(run) -> str:
    """What identifies a trained run across studies: a hash of its config (model.config.run_identity, without
    NOT_TRAINING, the seed included) and of its upstream run's id (or its transfer source)."""
    from model.config import run_identity

    d = run_identity(run.config)
    for section, key in NOT_TRAINING:
        d[section].pop(key, None)
    up = training_id(run.upstream) if run.upstream is not None else run.transfer_source
    return hashlib.sha1(json.dumps({"config": d, "from": up}, sort_keys=True).encode()).hexdigest()[:12]


def published_study(study_file: Path, results: Path):
    """(name, complete trials with `run` and cost columns, baseline, claims, records, quality metric) of a study
    file's folder under `results`: reads only trials.csv, records.csv(.gz), trivial.csv and study.json, and
    expands the study file again (at the folder's scale, --set and --seeds) to give each trial its
    `training_id` as `run`."""
    from model.errors import ConfigError

    from ..study import load_study

    study = load_study(study_file, "cpu")
    folder = Path(results) / study.name
    if not (folder / "study.json").exists() or not (folder / "trials.csv").exists():
        raise ConfigError(f"{folder}: no study.json / trials.csv (results of {study_file}; `bench run` it, or "
                          "pass the --results folder that holds it)")
    meta = pd.read_json(folder / "study.json", typ="series").to_dict()
    study = load_study(study_file, meta.get("scale", "cpu"), meta.get("overrides") or {}, meta.get("seeds_override"))
    trials = read_csv(folder / "trials.csv")
    done = trials[trials["state"] == "complete"].copy()
    done["is_baseline"] = done["is_baseline"].astype(str).str.lower() == "true"
    runs = {t.key: training_id(t.run) for t in study.trials}
    done["run"] = [runs.get(k, f"{study.name}/{k}") for k in done["trial"]]
    from .labels import short_labels

    done["name"] = short_labels(done, meta)  # what verdicts call a config (`N=4, E=40`), as the report does
    records = read_csv(folder / "records.csv")  # or records.csv.gz
    quality = meta.get("quality_metric", "kid")
    if not any(c.startswith("to_") for c in done):
        done = done.join(cost.per_trial(done, records, read_csv(folder / "trivial.csv"), quality))
    claims = [c.model_dump(mode="json") for c in study.spec.claims]
    return study.name, done, study.spec.baseline, claims, records, quality


def published_claims(study_files: list[Path], results: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The claims table (raw, view) of several study files' published folders (`bench claims`)."""
    items = []
    for f in study_files:
        name, done, baseline, claims, records, quality = published_study(Path(f), results)
        items += [(name, c, done, baseline, records, quality) for c in claims]
    return claims_table(items)


def brief_markdown(raw: pd.DataFrame, command: str, full: str = "claims.md") -> str:
    """The paper's claims in short (verdicts.brief_view), for the README: a table, the command that wrote it and a
    link to `full`, the whole table (a path relative to where the text is read: the repository root for the
    README)."""
    from .tables import md_table
    from .verdicts import brief_view

    view = brief_view(raw) if not raw.empty else raw
    body = md_table(view) if not view.empty else "No claims in these study files."
    return (f"{body}\n\nWritten by `{command}`; the full table with every interval and the other studies' "
            f"claims: [{full}]({full}).\n")


def claims_markdown(view: pd.DataFrame, command: str) -> str:
    """The claims table as a markdown page (written by `bench claims --out`)."""
    from .tables import md_table

    body = md_table(view) if not view.empty else "No claims in these study files."
    return f"# Paper claims\n\n{CLAIMS_NOTE}\n\nGenerated by:\n\n```bash\n{command}\n```\n\n{body}\n"
