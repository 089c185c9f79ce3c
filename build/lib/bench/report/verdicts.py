"""Computed verdicts: each config against its stage's baseline, and the paper's claims (a study file's
`claims:`, bench/paper_claims.py), as paired differences over seeds with their 95% intervals (stats.py).

Two rules hold everywhere a verdict is drawn:
  - the learned gate (gate.py): no quality verdict from a comparison involving a config with a trial that did
    not beat the best trivial baseline of its stage;
  - contention: time verdicts leave out the seeds where either trial was timed on a busy machine (trials.csv's
    `contended`), so no time verdict rests on marked trials.
Hours are process CPU hours where every trial of the comparison recorded them on the CPU, else wall hours
(older studies, CUDA), and the table says which.

`claims_table` also works across several published study folders (published.py, `bench claims`), where a run
that two studies share is counted once in a claim.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from . import cost, stats
from .gate import learned_flags

QUALITY_SCALE = {"kid": 1e3}


def measure_name(measure: str, clock: str = "", signal: str | None = None) -> str:
    """A claim measure as the claims table names it; `signal`: the metric a to_baseline_* target is read on
    (a claim's `signal`; None: the study's quality metric, named "quality")."""
    from .tables import quality_name

    names = {"hours": f"training {clock or 'CPU'} hours", "wall_hours": "training wall hours",
             "images_seen": "images seen", "steps": "optimizer steps",
             "time_per_epoch": f"{clock or 'CPU'} minutes per epoch",
             "ddpm_seconds_per_image": "full-chain DDPM sampling, wall s/image"}
    if measure in names:
        return names[measure]
    if measure.startswith("to_"):
        _, target, what = measure.split("_", 2)
        what = {"hours": f"{clock or 'CPU'} hours"}.get(what, what.replace("images", "images seen"))
        goal = "its seed's baseline's final" if target == "baseline" else "the best trivial baseline's"
        return f"{what} to reach {goal} {quality_name(signal) if isinstance(signal, str) else 'quality'}"
    return quality_name(measure)


def _column(df: pd.DataFrame, measure: str) -> tuple[str, str]:
    """(trials.csv column, clock) of a claim measure: CPU time where every row has it, else wall time."""
    def cpu_or_wall(cpu: str, wall: str) -> tuple[str, str]:
        have = cpu in df and pd.to_numeric(df[cpu], errors="coerce").notna().all()
        return (cpu, "CPU") if have else (wall, "wall")

    if measure == "hours":
        return cpu_or_wall("cpu_hours", "total_hours")
    if measure == "wall_hours":
        return "total_hours", "wall"
    if measure == "time_per_epoch":
        return cpu_or_wall("cpu_per_epoch_min", "time_per_epoch_min")
    if measure.startswith("to_") and measure.endswith("_hours"):
        return cpu_or_wall(measure.replace("_hours", "_cpu_hours"), measure)
    return measure, ""


def is_time(measure: str) -> bool:
    return measure in ("hours", "wall_hours", "time_per_epoch", "ddpm_seconds_per_image") or measure.endswith("_hours")


def is_quality(measure: str) -> bool:
    from bench.paper_claims import QUALITY_MEASURES

    return measure in QUALITY_MEASURES


def compare(x: pd.DataFrame, b: pd.DataFrame, measure: str, records: pd.DataFrame | None = None,
            quality: str = "kid") -> tuple[stats.Paired, str, str]:
    """(paired comparison, clock, why no verdict or '') of trials x against trials b (trials.csv rows with a
    `pair` column saying which rows pair up: the seed, or the runs' ids across studies). With `records`, a cost
    to a target gets no verdict when its difference is within one step of the evaluation grid (grid_step)."""
    both = pd.concat([x, b])
    col, clock = _column(both, measure)
    why = ""
    if is_quality(measure):
        bad = learned_flags(both) == False  # noqa: E712 (None: unknown)
        if bad.any():
            from .tables import model_name

            names = "; ".join(dict.fromkeys(f"`{model_name(r)}`" for _, r in both[bad].iterrows()))
            why = f"no verdict: {names} did not learn"
    if is_time(measure) and "contended" in both:
        busy = both.loc[both["contended"].astype(str).str.lower() == "true", "pair"]
        x, b = x[~x["pair"].isin(busy)], b[~b["pair"].isin(busy)]
        if len(busy) and x.empty:
            why = "no verdict: every pair was timed under contention"
    values = [pd.to_numeric(d.get(col, pd.Series(np.nan, index=d.index)), errors="coerce")
              .set_axis(d["pair"]) for d in (x, b)]
    p = stats.paired(values[0], values[1], measure)
    step = grid_step(records, pd.concat([x, b]), measure, quality) if records is not None else math.nan
    if not why and p.n > 1 and p.verdict in ("better", "worse") and abs(p.diff) <= step:
        why = (f"no verdict: the difference ({p.diff:+.4g}) is within one step of the evaluation grid the target "
               f"is read on ({step:.4g})")
    return p, clock, why


# a cost to a target (`to_<target>_<unit>`) is read at evaluations: its unit's column in records.csv
_GRID_COLUMNS = {"images": "images_seen", "steps": "steps", "epoch": "epoch", "hours": "train_hours",
                 "cpu_hours": "train_cpu_hours"}


def grid_step(records: pd.DataFrame, trials: pd.DataFrame, measure: str, quality: str) -> float:
    """The coarsest step between consecutive evaluations of `trials` (records.csv rows of the quality metric), in
    the unit of a `to_*` measure; NaN for any other measure. Two seeds that reach a target at the same evaluation
    give a zero-width interval: a difference no larger than this step is not resolved, whatever the interval."""
    if not measure.startswith("to_") or records is None or records.empty:
        return math.nan
    col = _GRID_COLUMNS.get(measure.split("_", 2)[2])
    rec = records[records["trial"].isin(trials["trial"]) & (records["metric"] == quality)] if col else None
    if rec is None or col not in rec or rec.empty:
        return math.nan
    gaps = rec.sort_values(col).groupby("trial")[col].diff()
    return float(gaps.max()) if gaps.notna().any() else math.nan


def _seeds(n: int) -> str:
    return "seed" if n == 1 else "seeds"


def verdict_cell(p: stats.Paired, why: str, scale: float = 1.0) -> str:
    """The verdict column: the word from the interval (none with one seed), or why there is none."""
    if why:
        return why
    if p.n < 2:
        return "–" if p.n else "no paired data"
    v = p.verdict
    if not v.startswith("no difference"):
        return v
    if p.diff == 0 and p.sd == 0:
        return f"no difference: equal at each of {p.n} seeds"
    need = p.seeds_needed()
    more = "" if need is None else (f"; ~{need if need <= stats.MAX_SEEDS else f'> {stats.MAX_SEEDS}'} seeds "
                                    "would resolve the observed difference")
    return f"{v} (resolvable: {stats.resolvable(p, scale)}{more})"


def _ours(p: stats.Paired, scale: float) -> str:
    from .tables import fmt

    if p.n == 0:
        return "–"
    return (f"{fmt(p.mean_x * scale)} vs {fmt(p.mean_b * scale)}; difference {stats.fmt_interval(p, scale)}, "
            f"ratio {stats.fmt_ratio(p)}")


# ---------------------------------------------------------------- config vs its stage's baseline
# Beside the study's quality metric (perception: KID or FID), one distortion measure: single-sample PSNR. A saving
# can trade one for the other (the cpu preset's log-normal levels won on KID and lost on PSNR); a verdict on the
# quality metric alone would not show it.
DISTORTION = "psnr"


def baseline_comparisons(data) -> pd.DataFrame:
    """One row per stage, non-baseline config and measure (the study's quality metric, single-sample PSNR where
    recorded, training hours): the paired comparison with the stage's baseline config over seeds; columns stage,
    label, measure, clock, n, mean_x, mean_b, diff, lo, hi, ratio, ratio_lo, ratio_hi, half_width, seeds_needed,
    verdict, why."""
    done = data.complete
    if "stale" in done:
        done = done[done["stale"].astype(str).str.lower() != "true"]
    done = done.assign(pair=done["seed"])
    distortion = DISTORTION != data.quality and DISTORTION in done and \
        pd.to_numeric(done[DISTORTION], errors="coerce").notna().any()
    measures = [data.quality] + ([DISTORTION] if distortion else []) + ["hours"]
    rows = []
    for stage, here in done.groupby("stage", sort=False):
        base = here[here["is_baseline"]]
        if base.empty:
            continue
        for label, x in here[~here["is_baseline"]].groupby("label", sort=False):
            for measure in measures:
                p, clock, why = compare(x, base, measure)
                rows.append({"stage": stage, "label": label, "name_row": x.iloc[0], "measure": measure,
                             "clock": clock, **p.__dict__, "half_width": p.half_width,
                             "seeds_needed": p.seeds_needed(), "verdict": "" if why else p.verdict, "why": why,
                             "paired": p})
    return pd.DataFrame(rows)


def section(data, out: Path, csv: bool) -> str:
    """The report's "Verdicts" section: each config against its stage's baseline, with intervals."""
    from .tables import md_table, model_name

    raw = baseline_comparisons(data)
    if raw.empty:
        return ""
    view = pd.DataFrame({
        "Stage": raw["stage"], "Model": [model_name(r) for r in raw["name_row"]],
        "Measure": [measure_name(m, c) for m, c in zip(raw["measure"], raw["clock"], strict=True)],
        "Ours vs baseline (difference [95% interval], ratio [interval])":
            [_ours(p, QUALITY_SCALE.get(m, 1.0)) for p, m in zip(raw["paired"], raw["measure"], strict=True)],
        "Seeds": raw["n"],
        "Verdict": [verdict_cell(p, w, QUALITY_SCALE.get(m, 1.0))
                    for p, w, m in zip(raw["paired"], raw["why"], raw["measure"], strict=True)]})
    text = ("## Verdicts\n\n" + NOTE + "\n\n" + md_table(view))
    if csv:
        raw.drop(columns=["name_row", "paired"]).to_csv(Path(out) / "report_verdicts.csv", index=False)
        text += f"\n\nNumbers: [report_verdicts.csv]({Path(out).name}/report_verdicts.csv)"
    return text


NOTE = ("Each config against its stage's baseline, paired by seed (same seed: same initialisation, data order "
        "and evaluation noise): mean of the per-seed differences (config − baseline) with its 95% t interval, "
        "and the geometric mean of the per-seed ratios with its interval. The verdict is 'better' or 'worse' "
        "only when the interval excludes 0; otherwise the interval's half-width is the smallest difference "
        "this study could have resolved. One seed: the numbers, no verdict. Beside the quality metric, "
        "single-sample PSNR (higher is better), where a saving may trade distortion for perception. Quality "
        "verdicts need every trial involved to have learned; time verdicts leave out trials timed under "
        "contention (trials.csv `contended`). KID is shown ×10³.")


# ---------------------------------------------------------------- claims
def _norm(v) -> str:
    """An axis value as text, so a YAML 4 matches trials.csv's 4, 4.0 or '4'."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "null"
    try:
        f = float(v)
        return repr(int(f)) if f.is_integer() else repr(f)
    except (TypeError, ValueError):
        return str(v).lower() if str(v).lower() in ("true", "false") else str(v)


def select(done: pd.DataFrame, selector: dict, stage: str | None) -> pd.DataFrame:
    """The rows of `done` whose param:<axis> columns hold the selector's values (and of `stage`, if given)."""
    keep = pd.Series(True, index=done.index)
    for axis, value in selector.items():
        col = f"param:{axis}"
        if col not in done:
            return done.iloc[0:0]
        keep &= done[col].map(_norm) == _norm(value)
    if stage is not None:
        keep &= done["stage"] == stage
    return done[keep]


def claim_pairs(done: pd.DataFrame, claim: dict, baseline: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(x rows, b rows) of one study for a claim, each with `pair`: the two runs' ids (or the seed)."""
    x = select(done, claim["compare"], claim.get("stage"))
    b = select(done, claim.get("against") or baseline, claim.get("stage") or (x["stage"].iloc[0] if len(x) else None))
    run = "run" if "run" in done and done["run"].notna().all() else "trial"
    runs_b = b.set_index("seed")[run]
    x = x[x["seed"].isin(runs_b.index)]
    x = x.assign(pair=[f"{r}|{runs_b[s]}" for r, s in zip(x[run], x["seed"], strict=True)])
    runs_x = x.set_index("seed")["pair"]
    b = b[b["seed"].isin(runs_x.index)].assign(pair=lambda d: d["seed"].map(runs_x))
    return x, b


def claims_table(claims: list[tuple]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """claims: (study name, claim, the study's complete trials, its baseline selector, its records, its quality
    metric) for each claim of each study. Claims with the same id in several studies are pooled where the studies
    were trained under the same scale preset (a claim's `setting`, bench/report/published.py; one row per
    setting otherwise); a pair of runs present in several studies counts once. A `to_baseline_*` claim pairs
    each seed with its own seed's baseline (cost.reach_own_baseline). Returns (raw, view)."""
    groups: dict[tuple, list] = {}
    for item in claims:
        groups.setdefault((item[1]["id"], item[1].get("setting")), []).append(item)
    rows = []
    for (cid, _), items in groups.items():
        claim = items[0][1]
        pairs = [claim_pairs(done, c, base) for _, c, done, base, _, _ in items]
        signal = claim.get("signal")  # the metric the target is read on; None: each study's quality metric
        if claim["measure"].startswith("to_baseline_"):
            pairs = [cost.reach_own_baseline(x, b, rec, signal or q)
                     for (x, b), (*_, rec, q) in zip(pairs, items, strict=True)]
        xs, bs = zip(*pairs, strict=True)
        x = pd.concat(xs).drop_duplicates("pair")
        b = pd.concat(bs).drop_duplicates("pair")
        recs = pd.concat([rec for *_, rec, _ in items if rec is not None and not rec.empty] or [pd.DataFrame()])
        p, clock, why = compare(x, b, claim["measure"], recs, signal or items[0][5])
        scale = QUALITY_SCALE.get(claim["measure"], 1.0)
        ours = _ours(p, scale)
        if claim["measure"].startswith("to_"):  # a seed that never reached the target pairs with nothing
            col = _column(pd.concat([x, b]), claim["measure"])[0]
            got = [int(pd.to_numeric(d.get(col), errors="coerce").notna().sum()) if col in d else 0 for d in (x, b)]
            ours += f" (seeds that reached it: {got[0]}/{len(x)} vs {got[1]}/{len(b)})"
            if got[0] == 0 and got[1] > 0 and len(x) and not why:  # a result (one seed too), not missing data
                why = f"not reached (0/{len(x)} {_seeds(len(x))} within the run; reference {got[1]}/{len(b)})"
        shared = sum(len(d) for d in xs) - len(x)
        rows.append({"id": cid, "statement": claim["statement"], "paper": claim.get("paper", ""),
                     "measure": claim["measure"], "signal": signal, "clock": clock,
                     "studies": ", ".join(dict.fromkeys(s for s, *_ in items)),
                     "shared_runs_counted_once": shared, **p.__dict__, "half_width": p.half_width,
                     "seeds_needed": p.seeds_needed(), "verdict": "" if why else p.verdict, "why": why,
                     "ours": ours, "verdict_text": verdict_cell(p, why, scale)})
    raw = pd.DataFrame(rows)
    if raw.empty:
        return raw, raw
    view = pd.DataFrame({
        "Claim": [f"**{i}**: {s}" for i, s in zip(raw["id"], raw["statement"], strict=True)],
        "Paper": raw["paper"],
        "Measure": [measure_name(m, c, g) for m, c, g in zip(raw["measure"], raw["clock"], raw["signal"],
                                                             strict=True)],
        "Ours (compared vs reference; difference [95% interval], ratio [interval])": raw["ours"],
        "Seeds": [f"{n}" + (f" ({k} shared runs counted once)" if k else "")
                  for n, k in zip(raw["n"], raw["shared_runs_counted_once"], strict=True)],
        "Verdict": raw["verdict_text"], "Study": raw["studies"]})
    return raw, view



def brief_view(raw: pd.DataFrame) -> pd.DataFrame:
    """The claims table cut to a front page: the paper's own claims only (those with a `paper:` value), one short
    cell each: ours as the measure's ratio to the reference with its 95% interval, the verdict word (or
    "unresolved", with the seeds that would resolve the observed difference)."""
    from .tables import fmt, quality_name

    short = {"time_per_epoch": "time/epoch", "hours": "hours", "wall_hours": "hours", "images_seen": "images",
             "steps": "steps", "ddpm_seconds_per_image": "sampling s/img"}
    rows = raw[~raw["paper"].astype(str).str.strip().isin(["", "-", "–"])]
    verdicts = []
    for _, r in rows.iterrows():
        v = r["verdict_text"]
        if r["verdict"].startswith("no difference") and not v.startswith("no difference: equal"):
            need = r["seeds_needed"]
            more = "" if need is None or pd.isna(need) else \
                f"; ~{int(need) if need <= stats.MAX_SEEDS else f'> {stats.MAX_SEEDS}'} would resolve it"
            v = f"unresolved, {r['n']} seeds{more}"
        verdicts.append(v)
    ours = []
    signals = rows["signal"] if "signal" in rows else pd.Series(None, index=rows.index)
    for m, g, x, lo, hi in zip(rows["measure"], signals, rows["ratio"], rows["ratio_lo"], rows["ratio_hi"],
                               strict=True):
        on = f" ({quality_name(g)})" if isinstance(g, str) else ""
        name = short.get(m) or (f"images to target{on}" if m.startswith("to_") else quality_name(m).split("×")[0])
        ours.append(f"{name} {fmt(x, 3)}× [{fmt(lo, 3)}, {fmt(hi, 3)}]" if pd.notna(lo) else
                    f"{name} {fmt(x, 3)}×" if pd.notna(x) else f"{name}: –")
    return pd.DataFrame({"Claim": rows["statement"].to_list(), "Paper": rows["paper"].to_list(),
                         "Ours ÷ reference [95%]": ours, "Verdict": verdicts})

CLAIMS_NOTE = ("Generated from the `claims:` of the study files (bench/paper_claims.py); nothing here is typed. "
               "'Ours' is the claim's config against its reference config (default: the study's baseline), "
               "paired by seed, KID ×10³; the verdict says whether the config is better or worse on that measure "
               "when the 95% interval of the difference excludes 0 (for times and images: of the ratio, which "
               "excludes 1; one seed: no verdict), and the gate and contention rules of the Verdicts section "
               "apply. Images (or hours) to a target are read at evaluations, so they resolve no finer than the "
               "run's evaluation grid (`eval.every_epochs`; for a target read on the held-out loss, "
               "`eval.loss_every_epochs`).")


def claims_section(data, out: Path, csv: bool) -> str:
    """The report's "Paper claims" section, from study.json's claims (empty when the study has none)."""
    from .tables import md_table

    claims = data.meta.get("claims") or []
    if not claims:
        return ""
    done = data.complete
    if not any(c.startswith("to_") for c in done) and any(c["measure"].startswith("to_") for c in claims):
        done = done.join(cost.per_trial(done, data.records, data.trivial, data.quality))
    name = data.meta.get("name", data.dir.name)
    raw, view = claims_table([(name, c, done, data.meta.get("baseline", {}), data.records, data.quality)
                              for c in claims])
    text = f"## Paper claims\n\n{CLAIMS_NOTE}\n\n{md_table(view.drop(columns='Study'))}"
    if csv:
        raw.to_csv(Path(out) / "report_claims.csv", index=False)
        text += f"\n\nNumbers: [report_claims.csv]({Path(out).name}/report_claims.csv)"
    return text
