"""Plain-sentence findings, computed from the report's tables (never hand-written claims).

Per stage (each stage has its own baseline, task and data): which config was fastest per epoch and in total,
by what factor against the baseline (the same speed-up numbers as `trials.csv`), and at what quality cost;
which config had the best quality; how many epochs each transfer source needed to reach the from-scratch
quality. With one seed per config there are no error bars, and the sentences say so.

The learned gate (bench/report/gate.py): a comparison of quality that involves a config whose final model did not
beat the best trivial baseline of its task gives no verdict; the sentence names the configs that did not
learn instead. Times per epoch and in total are still compared: they are measured whatever was learned.
"""

from __future__ import annotations

import math

import pandas as pd

from .gate import trivial_name
from .tables import FID_RELIABLE_N, LOWER_IS_BETTER, SCALE, StudyData, fmt, quality_name


def _name(row) -> str:
    return "the baseline" if row["is_baseline"] else f"`{row['label']}`"


def _quality_cost(row, base, q: str, qname: str, multi_seed: bool) -> str:
    k = SCALE.get(q, 1.0)
    a, b = row[f"{q}_mean"], base[f"{q}_mean"]
    if math.isnan(a) or math.isnan(b):
        return f"{qname} not computed"
    diff, ratio = (a - b) * k, (a / b if b else math.nan)
    better = (diff < 0) == (q in LOWER_IS_BETTER)
    text = (f"{qname} {fmt(a * k)} vs {fmt(b * k)} for the baseline (difference {diff:+.3g}, "
            f"ratio {ratio:.3f}: {'better' if better and diff else 'worse' if diff else 'equal'})")
    if multi_seed:
        noise = math.hypot(row[f"{q}_std"], base[f"{q}_std"]) * k
        if math.isnan(noise):
            text += "; one seed on one side: no error bar"
        else:
            within = abs(diff) <= 2 * noise
            text += f"; {'within' if within else 'beyond'} 2 seed standard deviations ({fmt(2 * noise, 3)})"
    return text


def _names(labels) -> str:
    return ", ".join(f"`{x}`" for x in labels)


def _no_verdict(labels) -> str:
    return f"no verdict on quality: {_names(labels)} did not learn"


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
    names = ", ".join(f"`{label}`" + (f" (seed {', '.join(map(str, s))})" if len(s) < total[label] else "")
                      for label, s in seeds.items())
    return (f"{prefix}configs that did not learn (final {qname} no better than {against}): {names}. No "
            "conclusion about their quality, nor from any comparison involving them, follows at this budget.")


def _stage_findings(stage: str, eff: pd.DataFrame, qual: pd.DataFrame, data: StudyData,
                    prefix: str) -> list[str]:
    q = data.quality
    qname = quality_name(q)
    rows = eff.merge(qual[["label"] + [c for c in qual if c.startswith(f"{q}_")]], on="label", how="left")
    rows = rows[rows["stage"] == stage].reset_index(drop=True)
    for c in (f"{q}_mean", f"{q}_std"):  # the quality metric may not have been computed (eval.metrics)
        if c not in rows:
            rows[c] = math.nan
    if rows.empty:
        return []
    gate_line = _gate_sentence(stage, data, prefix)
    bad = set(data.unlearned(rows["label"]))
    if len(rows) == 1:
        r = rows.iloc[0]
        return [f"{prefix}only one config ({_name(r)}): {fmt(r['total_hours_mean'], 3)} h in total, "
                f"{fmt(r['time_per_epoch_min_mean'], 3)} min per epoch, {qname} "
                f"{fmt(r[f'{q}_mean'] * SCALE.get(q, 1.0))}; nothing to compare."] + ([gate_line] if gate_line else [])
    bases = rows[rows["is_baseline"]]
    base = bases.iloc[0] if len(bases) else None
    out = []
    fast = rows.loc[rows["time_per_epoch_min_mean"].idxmin()]
    total = rows.loc[rows["total_hours_mean"].idxmin()]
    text = (f"{prefix}fastest per epoch: {_name(fast)} ({fmt(fast['time_per_epoch_min_mean'], 3)} min/epoch")
    if base is not None and not fast["is_baseline"]:
        text += f", {fast['speedup_per_epoch']:.2f}× the baseline's speed per epoch"
    out.append(text + ").")
    text = f"{prefix}least total training time: {_name(total)} ({fmt(total['total_hours_mean'], 3)} h"
    if base is None:
        out.append(text + "; no baseline in this stage, so no speed-up).")
    elif total["is_baseline"]:
        out.append(text + "): no config was faster in total than the baseline.")
    else:
        involved = [x for x in (total["label"], base["label"]) if x in bad]
        cost = _no_verdict(involved) if involved else "at " + _quality_cost(total, base, q, qname, data.multi_seed)
        out.append(text + f", speed-up {total['speedup']:.2f}× over the baseline's "
                   f"{fmt(base['total_hours_mean'], 3)} h), {cost}.")
    ranked = rows[rows[f"{q}_mean"].notna() & ~rows["label"].isin(bad)]  # a ranking only among learned configs
    if rows[f"{q}_mean"].notna().any() and ranked.empty:
        out.append(f"{prefix}best {qname}: no verdict: every config has a trial that did not learn.")
    elif not ranked.empty:
        best = ranked.loc[ranked[f"{q}_mean"].idxmin() if q in LOWER_IS_BETTER else ranked[f"{q}_mean"].idxmax()]
        among = " among the configs that learned" if bad else ""
        if base is not None and best["label"] == total["label"] and not best["is_baseline"] and not bad:
            out.append(f"{prefix}{_name(best)} also had the best {qname}.")
        else:
            text = f"{prefix}best {qname}{among}: {_name(best)} ({fmt(best[f'{q}_mean'] * SCALE.get(q, 1.0))}"
            if base is not None and not best["is_baseline"]:
                cost = (_no_verdict([base["label"]]) if base["label"] in bad
                        else _quality_cost(best, base, q, qname, data.multi_seed))
                text += f", speed-up {best['speedup']:.2f}×; {cost}"
            out.append(text + ").")
    return out + ([gate_line] if gate_line else [])


def _reach_findings(reach: pd.DataFrame, qname: str) -> list[str]:
    out = []
    for _, r in reach[reach["transfer_source"] != "scratch"].iterrows() if not reach.empty else []:
        head = f"{r['stage']}: starting from `{r['transfer_source']}`"
        if r.get("unlearned"):
            out.append(f"{head}: no verdict on the epochs to reach the from-scratch {qname}: "
                       f"{r['unlearned']} did not learn.")
        elif r["seeds_reached"] == 0:
            out.append(f"{head} did not reach the from-scratch final {qname} within its "
                       f"{fmt(r['trained_epochs'])} epochs.")
        else:
            share = r["epochs_to_reach"] / r["scratch_epochs"]
            out.append(f"{head} reached the from-scratch final {qname} after {fmt(r['epochs_to_reach'])} "
                       "epochs "
                       f"({share:.0%} of the scratch run's {fmt(r['scratch_epochs'])}, "
                       f"{fmt(r['hours_to_reach'], 3)} h of its own training).")
    return out


def findings(data: StudyData, qual: pd.DataFrame, eff: pd.DataFrame, reach: pd.DataFrame) -> list[str]:
    stages = list(dict.fromkeys(data.complete["stage"]))
    out = []
    for stage in stages:
        out += _stage_findings(stage, eff, qual, data, f"{stage}: " if len(stages) > 1 else "")
    out += _reach_findings(reach, quality_name(data.quality))
    if not data.multi_seed:
        out.append("One seed per config: no error bars, so any of these differences may be run-to-run noise.")
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
