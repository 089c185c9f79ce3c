"""Plain-sentence findings, computed from the verdicts (verdicts.py, stats.py), never hand-written claims.

A finding is a difference its 95% interval resolves: per stage, each config whose paired difference with the
stage's baseline (over seeds) excludes 0 on the study's quality metric or on training time (CPU hours where
recorded; trials timed under contention left out). What no interval resolves is one line per stage: which
comparisons, the smallest difference each could have resolved and roughly how many seeds would resolve the
observed one (from the observed sd of the paired differences). With one seed per config there is no verdict.

The learned gate (gate.py): no quality verdict from a comparison that involves a config with a trial whose final
model did not beat the best trivial baseline of its task; the gate's line names those configs instead.
"""

from __future__ import annotations

import pandas as pd

from . import stats
from .gate import trivial_name
from .tables import FID_RELIABLE_N, SCALE, StudyData, fmt, model_name, quality_name
from .verdicts import QUALITY_SCALE, baseline_comparisons, measure_name


def _gate_sentence(stage: str, data: StudyData, prefix: str) -> str | None:
    """Which configs of the stage did not learn (or that all did), against which trivial baseline."""
    q = data.quality
    done = data.complete[data.complete["stage"] == stage]
    flags = data.learned[done.index]
    if flags.isna().all():
        return None
    best = done.dropna(subset=["trivial_best"]).iloc[0] if done["trivial_best"].notna().any() else None
    k, qname = SCALE.get(q, 1.0), quality_name(q)
    against = (f"the best trivial baseline, {trivial_name(best['trivial_best'])} at {qname} "
               f"{fmt(float(best[f'trivial_{q}']) * k)}" if best is not None else "the best trivial baseline")
    bad = done[flags == False]  # noqa: E712 (None: unknown)
    if bad.empty:
        return f"{prefix}every config learned: each final model beat {against}."
    seeds = bad.groupby("label", sort=False)["seed"].apply(list)
    total = done.groupby("label", sort=False)["seed"].nunique()
    shown = {r["label"]: model_name(r) for _, r in done.iterrows()}
    names = ", ".join(f"`{shown[label]}`" + (f" (seed {', '.join(map(str, s))})" if len(s) < total[label] else "")
                      for label, s in seeds.items())
    return (f"{prefix}configs that did not learn (final {qname} no better than {against}): {names}. No "
            "conclusion about their quality, nor from any comparison involving them, follows at this budget.")


def _stage_findings(stage: str, rows: pd.DataFrame, data: StudyData, prefix: str) -> list[str]:
    """The resolved differences of one stage, then one line for what is unresolved."""
    out, unresolved, one_seed = [], [], False
    for _, r in rows.iterrows():
        p, scale = r["paired"], QUALITY_SCALE.get(r["measure"], 1.0)
        what = measure_name(r["measure"], r["clock"])
        name = f"`{model_name(r['name_row'])}`"
        if r["why"] or p.n == 0:
            continue  # the gate's line (or the contention note) says why
        if p.n < 2:
            one_seed = True
        elif r["verdict"] in ("better", "worse"):
            out.append(f"{prefix}{name} against the baseline: {stats.sentence(p, what, scale)}.")
        else:
            need = p.seeds_needed()
            more = "" if need is None else (f", ~{need if need <= stats.MAX_SEEDS else f'> {stats.MAX_SEEDS}'} "
                                             "seeds would resolve the observed difference")
            unresolved.append(f"{name} on {what} ({stats.fmt_interval(p, scale)}: resolvable "
                              f"{stats.resolvable(p, scale)}{more})")
    if unresolved:
        n = rows["n"].max()
        out.append(f"{prefix}no difference resolved with {n} seeds: " + "; ".join(unresolved) + ".")
    if one_seed:
        out.append(f"{prefix}one seed per config: no verdicts; the Verdicts table has the differences, which may "
                   "be run-to-run noise.")
    return out


def findings(data: StudyData) -> list[str]:
    """The findings of a study, one sentence each (see the module docstring)."""
    stages = list(dict.fromkeys(data.complete["stage"]))
    comps = baseline_comparisons(data)
    out = []
    for stage in stages:
        prefix = f"{stage}: " if len(stages) > 1 else ""
        labels = data.complete.loc[data.complete["stage"] == stage, "label"].unique()
        here = comps[comps["stage"] == stage] if not comps.empty else comps
        if len(labels) == 1:
            out.append(f"{prefix}only one config: nothing to compare.")
        elif here.empty:
            out.append(f"{prefix}no baseline config in this stage: nothing compared.")
        else:
            out += _stage_findings(stage, here, data, prefix)
            busy = here[here["why"].str.contains("contention", na=False)]
            if not busy.empty:
                names = ", ".join(f"`{model_name(r)}`" for r in busy["name_row"])
                out.append(f"{prefix}no time verdict for {names}: every "
                           "seed pair was timed under contention (trials.csv `contended`).")
        gate_line = _gate_sentence(stage, data, prefix)
        out += [gate_line] if gate_line else []
    ns = pd.to_numeric(data.complete.get("n_samples", pd.Series(dtype=float)), errors="coerce").dropna()
    if data.has_fid and len(ns) and ns.min() < FID_RELIABLE_N:
        n = fmt(ns.min()) if ns.min() == ns.max() else f"{fmt(ns.min())}–{fmt(ns.max())}"
        out.append(f"FID and KID come from {n} samples: FID with fewer than "
                   f"{FID_RELIABLE_N} samples is biased upward and only comparable at equal N.")
    failed = int((data.trials["state"] != "complete").sum())
    if failed:
        out.append(f"{failed} of {len(data.trials)} finished trials failed (see Failed trials); "
                   "they are left out of every table and figure.")
    return out
