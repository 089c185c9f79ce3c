"""Write OUT/summary.md from the two sides scripts/quickstart_ab.py left in OUT/old and OUT/new.

    python scripts/quickstart_summary.py results/quickstart-ab

Per side: the quickstart's wall time, the share of the workers' time (workers x wall) that trained (the sum of
every run's epoch wall times, each run once), evaluated, and neither (start-up, the report, a worker idle at
the end), and the number of evaluations: sampled (KID and the rest) and held-out loss only. Per stage and
config: images seen, the final quality metric (the study's: KID for the quickstart) of each side and their
difference with the interval of the evaluation's sampling uncertainty (± 1.96 sqrt(se_old² + se_new²), the
bootstrap standard errors each evaluation recorded; one seed per side, so seed-to-seed spread is not in it),
and whether the trial beat its trivial baseline. Verdict words follow bench/report/stats.py: "worse" or
"better" only where the interval excludes 0.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report.labels import short_labels  # noqa: E402
from bench.report.stats import lower_is_better  # noqa: E402
from bench.report.tables import SCALE, md_table, quality_name, read_csv  # noqa: E402

Z = 1.96  # two-sided 95% normal quantile


def side(folder: Path) -> dict:
    timing = json.loads((folder / "timing.json").read_text())
    meta = json.loads((folder / "study.json").read_text())
    trials = read_csv(folder / "trials.csv")
    trials = trials[trials["state"] == "complete"].copy()
    trials["name"] = short_labels(trials, meta)
    rec = read_csv(folder / "records.csv")
    own = rec[rec["target_stage"].astype(str).str.lower() == "true"]  # each run once (not as an upstream)
    train = float(own.loc[own["metric"] == "epoch_seconds", "value"].sum())
    evals = own.loc[own["metric"] == "eval_seconds", "value"]
    quality = meta.get("quality_metric", "kid")
    sampled = int((own["metric"] == quality).sum())  # the rest scored the held-out loss alone (model/heldout.py)
    worker_seconds = timing["workers"] * timing["wall_seconds"]
    return {"timing": timing, "trials": trials, "quality": quality, "train_s": train,
            "eval_s": float(evals.sum()), "n_evals": sampled, "n_loss_only": int(len(evals)) - sampled,
            "worker_s": worker_seconds}


def _short(commit: str) -> str:
    return "." if commit.startswith("worktree@") else commit[:7]


def pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def summary(out: Path) -> str:
    old, new = side(out / "old"), side(out / "new")
    rows = []
    for label, s in (("old", old), ("new", new)):
        t = s["timing"]
        commit = t["commit"]
        commit = f"working tree on {commit[9:21]}" if commit.startswith("worktree@") else commit[:12]
        rows.append({"side": label, "commit": commit, "wall (min)": f"{t['wall_seconds'] / 60:.1f}",
                     "workers": t["workers"], "training": pct(s["train_s"] / s["worker_s"]),
                     "training (worker-min)": f"{s['train_s'] / 60:.1f}",
                     "evaluating": pct(s["eval_s"] / s["worker_s"]),
                     "evaluating (worker-min)": f"{s['eval_s'] / 60:.1f}",
                     "other (start-up, report, idle)": pct(1 - (s["train_s"] + s["eval_s"]) / s["worker_s"]),
                     "evaluations (sampled)": s["n_evals"], "held-out loss only": s["n_loss_only"],
                     "load at start": f"{t['load_average_start']:.2f}"})
    ratio = new["timing"]["wall_seconds"] / old["timing"]["wall_seconds"]
    q = new["quality"]
    qn, k = quality_name(q), SCALE.get(q, 1.0)
    keys = ["stage", "name", "seed"]
    both = old["trials"].merge(new["trials"], on=keys, suffixes=("_old", "_new"), how="outer")
    comp = []
    for _, r in both.iterrows():
        d = r[f"{q}_new"] - r[f"{q}_old"]
        h = Z * math.hypot(r.get(f"{q}_se_old", math.nan), r.get(f"{q}_se_new", math.nan))
        higher = d - h > 0  # the interval lies above 0; lower_is_better says which way is better (PSNR: up)
        word = "" if not math.isfinite(h) else ("no difference resolved" if d - h <= 0 <= d + h else
                                                 "worse" if higher == lower_is_better(q) else "better")
        comp.append({"stage": f"`{r['stage']}`", "config": r["name"], "seed": int(r["seed"]),
                     "images old / new": f"{r['images_seen_old']:,.0f} / {r['images_seen_new']:,.0f}",
                     f"{qn} old": f"{k * r[f'{q}_old']:.3g} ± {k * r[f'{q}_se_old']:.2g}",
                     f"{qn} new": f"{k * r[f'{q}_new']:.3g} ± {k * r[f'{q}_se_new']:.2g}",
                     "new − old [95%]": f"{k * d:+.3g} [{k * (d - h):+.3g}, {k * (d + h):+.3g}]",
                     "verdict": word, "learned old / new": f"{r['learned_old']} / {r['learned_new']}"})
    cpu = {old["timing"]["cpu"], new["timing"]["cpu"]}
    worse = [f"{c['stage']} {c['config']}" for c in comp if c["verdict"] == "worse"]
    lines = [
        "# Quickstart, two commits side by side", "",
        "## Headline", "",
        f"`bash scripts/quickstart.sh`: {new['timing']['wall_seconds'] / 60:.0f} min, {ratio:.2f}× the "
        f"{old['timing']['wall_seconds'] / 60:.0f} min of {rows[0]['commit'][:7]} run just before, same "
        f"{new['timing']['cores']}-core {new['timing']['cpu']}; {rows[1]['training']} of the workers' time trained "
        f"({rows[0]['training']} before); "
        + (f"final {qn} worse beyond its interval: {', '.join(worse)}." if worse else
           f"no final {qn} worse beyond its interval."), "",
        "## Measured", "",
        f"Written by `python scripts/quickstart_summary.py {out}` from what `python scripts/quickstart_ab.py --old "
        f"{_short(old['timing']['commit'])} --new {_short(new['timing']['commit'])} --out {out}` measured: "
        f"`bash scripts/quickstart.sh` of each commit, one after the other, on {' / '.join(sorted(cpu))} "
        f"({old['timing']['cores']} cores). Wall time: the quickstart's whole command (both workers, then the "
        "report). Shares are of the workers' time (workers × wall).", "",
        md_table(pd.DataFrame(rows)), "",
        f"**Wall time, new / old: {ratio:.2f}×** (one run each; {old['timing']['wall_seconds'] / 60:.1f} → "
        f"{new['timing']['wall_seconds'] / 60:.1f} min).", "",
        f"Final {qn} per trial (± the evaluation's bootstrap standard error). The interval is the "
        "evaluation's sampling uncertainty only (one seed per side): a verdict here says the two runs' samples "
        "differ, not that the configs would at every seed.", "",
        md_table(pd.DataFrame(comp)), ""]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python scripts/quickstart_summary.py OUT (the folder quickstart_ab.py wrote)", file=sys.stderr)
        return 2
    out = Path(argv[0])
    for s in ("old", "new"):
        if not (out / s / "timing.json").exists():
            print(f"{out / s / 'timing.json'}: missing (run scripts/quickstart_ab.py first)", file=sys.stderr)
            return 2
    text = summary(out)
    tmp = out / "summary.md.tmp"
    tmp.write_text(text)
    tmp.replace(out / "summary.md")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
