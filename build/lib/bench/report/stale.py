"""The report's list of stale trials: finished trials whose point the study file no longer asks for.

A study edited between two `bench run`s into one folder keeps the trials of its earlier points on disk and in
trials.csv (column `stale`, bench/records.py `stale_keys`); `tables.load` keeps them out of every table,
finding, claim and figure unless `bench report --include-stale` asks, and this section lists them apart.
"""

from __future__ import annotations

import pandas as pd

from .tables import StudyData, md_table

HEADING = "## Points no longer in the study file"


def section(data: StudyData, included: bool) -> str:
    """Markdown listing `data.stale` (label, seed, stage, state, trial key); "" when there is none."""
    if data.stale.empty:
        return ""
    rows = [(t["label"], t["seed"], t["stage"], t["state"], f"`{t['trial']}`") for _, t in data.stale.iterrows()]
    where = ("They are **included** in the tables, findings and figures above (`--include-stale`)." if included
             else "No table, finding, claim or figure above draws from them; `bench report --include-stale` "
                  "includes them.")
    return (f"{HEADING}\n\n{len(rows)} finished trial(s) whose point "
            f"`{data.meta.get('file', 'the study file')}` no longer asked for when this folder was last run "
            f"(`bench run`): the study file was edited since they ran. They stay on disk (trials/, runs/) and in "
            f"trials.csv (column `stale`). {where}\n\n"
            + md_table(pd.DataFrame(rows, columns=["Point", "Seed", "Stage", "State", "Trial"])))
