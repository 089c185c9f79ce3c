"""`bench report`: `report.md` for a study folder, with the CSV tables and PNG figures it embeds in `report/`.

Every link is relative to the study folder, so the folder can be copied or rendered on GitHub as is. All the
numbers come from `trials.csv` / `records.csv` and the runs' files (see tables.py); the findings are
sentences computed from them (findings.py). `report/` belongs to the report: it is emptied and rewritten.
"""

from __future__ import annotations

import html
import json
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from model.atomicio import atomic_write_bytes

from .. import records
from . import cost, figures, labels, samples, stale, tables, verdicts
from .findings import findings
from .tables import FID_RELIABLE_N, StudyData, fmt, md_table, quality_name

REPORT_DIR = "report"


def write_report(study_dir: Path, formats=("md", "csv"), include_stale: bool = False) -> Path:
    """Write report.md (plus report/*.csv when 'csv' in formats, report.html when 'html'); return its path.
    `include_stale`: also tabulate the trials the study file no longer asks for (else only listed apart)."""
    study_dir = Path(study_dir)
    records.published_copy(study_dir)
    data = tables.load(study_dir, include_stale)
    out = study_dir / REPORT_DIR
    if out.exists():
        shutil.rmtree(out)
    out.mkdir()
    csv = "csv" in formats
    parts = [_header(data)]
    if data.complete.empty:
        parts.append("## Results\n\nNo trial completed: nothing to tabulate.")
    else:
        qual, eff = tables.quality_table(data), tables.efficiency_table(data)
        parts += [_paper_tables(data, qual, eff, out, csv), _ablations(data, out, csv)]
        parts.append(verdicts.section(data, out, csv))  # each config vs its stage's baseline, with intervals
        parts.append(verdicts.claims_section(data, out, csv))  # the study file's claims (bench/paper_claims.py)
        parts.append(cost.section(data, out, csv))  # cost to reach the baseline's / the best trivial quality
        parts += [_figures(data, out, csv), samples.section(data, out),
                  "## Findings\n\n" + "\n".join(f"- {s}" for s in findings(data))]
    failed = tables.failed_table(data)
    if not failed.empty:
        parts.append("## Failed trials\n\n" + md_table(failed))
    parts += [stale.section(data, include_stale)] if not data.stale.empty else []  # listed apart (issue 24)
    text = "\n\n".join(p for p in parts if p) + "\n"  # a section with nothing to say is ""
    md_path = study_dir / "report.md"
    atomic_write_bytes(md_path, lambda f: f.write(text.encode()))
    if "html" in formats:
        html_path = study_dir / "report.html"
        page = md_to_html(text, f"{data.meta.get('name', study_dir.name)} report")
        atomic_write_bytes(html_path, lambda f: f.write(page.encode()))
        if "md" not in formats:
            return html_path
    return md_path


# ---------------------------------------------------------------- header
def _run_facts(data: StudyData) -> list[dict]:
    """One entry per training run of the complete trials: its stage, data, task and schedule."""
    facts, seen = [], set()
    for key in data.complete["trial"]:
        trial = records.read_json(data.dir / "trials" / key / "trial.json")
        for run in trial.get("chain", []):
            run_dir = data.dir / "runs" / run["key"]
            if run["key"] in seen or not (run_dir / "config.json").exists():
                continue
            seen.add(run["key"])
            cfg = records.read_json(run_dir / "config.json")
            hist = records.read_json(run_dir / "history.json") if (run_dir / "history.json").exists() else []
            sizes = {r["subset"]: r.get("subset_size", 0) for r in hist}
            d, t, tr, ev = cfg["data"], cfg["task"], cfg["train"], cfg["eval"]
            mask = f" ({t['mask']} masks)" if t["name"] == "inpainting" else ""
            epochs = f" ({tr['epochs']} epochs)" if tr.get("epochs") else ""
            steps = f" {ev['steps']} steps" if ev["sampler"] == "ddim" else ""
            mean_of = f"; 'of mean': mean of {ev['mmse_samples']} draws" if ev.get("mmse_samples", 1) > 1 else ""
            facts.append({
                "Stage": run["stage"], "Task": t["name"] + mask,
                "Data source": d["source"] + (f" ({d['path']})" if d.get("path") else ""),
                "Image size": f"{d['image_size']} px", "Train images": fmt(sum(sizes.values())),
                "N × E": f"{tr['subsets']} × {tr['epochs_per_subset']}{epochs}",
                "T": str(cfg["diffusion"]["timesteps"]),
                "Eval": f"{ev['n_samples']} samples, {ev['sampler']}{steps}{mean_of}"})
    return facts


def _joined(values) -> str:
    return " / ".join(dict.fromkeys(str(v) for v in values if v not in (None, "")))


def _relative(path) -> str | None:
    """A path as the Reproduce command shows it: relative to the working folder when under it, else None (the
    command then names it RESULTS), so it never carries the folders of the machine it ran on."""
    p = Path(path)
    if not p.is_absolute():
        return p.as_posix()
    try:
        return p.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return None


def _header(data: StudyData) -> str:
    m, trials = data.meta, data.trials
    info = [records.read_json(data.dir / "trials" / k / "trial.json") for k in trials["trial"]]
    stamps = [(data.dir / "trials" / k / "trial.json").stat().st_mtime for k in trials["trial"]]
    when = sorted(datetime.fromtimestamp(s, timezone.utc).strftime("%Y-%m-%d %H:%M UTC") for s in stamps)
    done, failed = len(data.complete), int((trials["state"] != "complete").sum())
    pending = max(0, int(m.get("trials", len(trials))) - len(trials))
    q = data.quality
    rows = [("Study file", f"`{_relative(m.get('file', '?'))}`"), ("Scale", m.get("scale", "?")),
            ("Quality metric", f"{quality_name(q)} (lower is better)" if q != "psnr" else q),
            ("Baseline", ", ".join(f"{k} = {v}" for k, v in m.get("baseline", {}).items()) or "none"),
            ("Swept axes", ", ".join(f"`{a}`" for a in m.get("axes", [])) or "none"),
            *([("Follow from the others", ", ".join(f"`{a}`" for a in labels.follows(m))
                + " (settings, not ablation axes: left out of names and ablation tables)")]
              if labels.follows(m) else []),
            ("Trials", f"{done} complete, {failed} failed, {pending} not run (of {m.get('trials', '?')})"),
            ("Model parameters", _joined(fmt(v) for v in data.complete.get("num_parameters", [])) or "–"),
            ("Device", _joined(f"{i['device']} ({i.get('device_name', '')})" for i in info if "device" in i)
             or "not recorded"),
            ("torch", _joined(i.get("torch_version") for i in info) or "not recorded"),
            ("Trials finished", f"{when[0]} – {when[-1]}" if when else "–"),
            ("Report written", datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))]
    facts = _run_facts(data)
    stage_rows = [{k: _joined(f[k] for f in facts if f["Stage"] == st) for k in facts[0]}
                  for st in dict.fromkeys(f["Stage"] for f in facts)] if facts else []
    root = _relative(data.dir.parent)
    where = "" if root is not None else "# RESULTS: the folder that holds this study folder\n"
    root = root or "RESULTS"
    results = "" if root == "results" else f" --results {root}"
    results += "".join(f" --set {k}={json.dumps(v) if not isinstance(v, str) else v}"
                       for k, v in (m.get("overrides") or {}).items())
    if m.get("seeds_override"):
        results += " --seeds " + ",".join(str(s) for s in m["seeds_override"])
    text = [f"# Report: {m.get('name', data.dir.name)}", m.get("description", ""), "## What was run",
            md_table(pd.DataFrame(rows, columns=["", "Value"]))]
    if stage_rows:
        text += ["Data, task and training per stage (values that differ between runs are joined by /):",
                 md_table(pd.DataFrame(stage_rows))]
    text += ["Reproduce (then rebuild this report):",
             f"```bash\n{where}bench run {_relative(m.get('file', '<file>')) or Path(m['file']).name} "
             f"--scale {m.get('scale', '?')}{results}\n"
             f"bench report {root}/{data.dir.name}\n```"]
    return "\n\n".join(t for t in text if t)


# ---------------------------------------------------------------- tables
def _block(title: str, note: str, frames, name: str, out: Path, csv: bool) -> str:
    raw, view = frames
    text = f"{title}\n\n{note}\n\n{md_table(view)}" if note else f"{title}\n\n{md_table(view)}"
    if csv:
        raw.to_csv(out / f"{name}.csv", index=False)
        text += f"\n\nNumbers: [{name}.csv]({REPORT_DIR}/{name}.csv)"
    return text


def _trivial_note(data: StudyData) -> str:
    """What the trivial rows and the Learned column mean (bench/report/gate.py), when the study has them."""
    if data.trivial.empty:
        return ""
    q = quality_name(data.quality)
    return (" Rows 'trivial: ...' score outputs that need no training (gray copy: the gray condition as the "
            "colour output; mean fill: the hole filled with the known pixels' mean colour; edge replication: "
            "each hidden pixel copies its nearest known one; biharmonic inpainting: scikit-image's "
            "`inpaint_biharmonic`) on the evaluator's own samples, seeds, masks and metrics. A config has "
            f"**learned** when its final {q} beats the best trivial baseline of its stage "
            f"('{q} ÷ best trivial' below 1 for a lower-is-better metric); comparisons that involve a config "
            "that did not learn draw no verdict (Findings).")


def _paper_tables(data: StudyData, qual, eff, out: Path, csv: bool) -> str:
    n = pd.to_numeric(data.complete.get("n_samples"), errors="coerce").dropna()
    has_se = any(c.endswith("_se") for c in data.complete)
    seeds = ("Mean ± std over seeds (each evaluation's own bootstrap standard error over its samples is in the "
             "CSV, columns `*_se_mean`)" if data.multi_seed
             else "One seed per config: ± is the bootstrap standard error over the evaluated samples (200 "
                  "resamples; it says how much another draw of test images would move the number, not another "
                  "seed)" if has_se
             else "One seed per config: no error bars")
    ns = _joined(fmt(v) for v in sorted(n.unique()))
    fid_note = (f" FID@N is computed from N = {ns} generated samples; with fewer than {FID_RELIABLE_N} "
                "samples FID is biased upward and only comparable at equal N." if data.has_fid else "")
    base = ", ".join(f"{k} = {v}" for k, v in data.meta.get("baseline", {}).items()) or "none"
    effic_note = (f"Speed-up = the total training hours of the baseline ({base}) of the same stage / this "
                  "config's (means over seeds; one seed: trials.csv's `speedup`); per epoch: the same with "
                  "the time per epoch. On the CPU both use process CPU time where the runs recorded it "
                  "(trials.csv `speedup_clock`), which a busy machine does not bend; on CUDA synchronised wall "
                  "time. Training time excludes evaluation. Optimizer steps can differ at equal "
                  "images seen: each epoch of a subset ends with a partial batch.")
    if data.has_transfer:
        effic_note += " 'Incl. source training' adds the training of the stages it was transferred from."
    return "\n\n".join([
        "## Paper-style tables",
        _block("### Quality (test split)", f"{seeds}.{fid_note}{_trivial_note(data)}", qual, "report_quality", out,
               csv),
        _block("### Efficiency", effic_note, eff, "report_efficiency", out, csv)])


def _ablations(data: StudyData, out: Path, csv: bool) -> str:
    blocks = tables.ablation_tables(data)
    if not blocks:
        return "## Ablations\n\nNo axis varies within a stage: nothing to ablate."
    several = len({stage for stage, _ in blocks}) > 1 or data.complete["stage"].nunique() > 1
    text = ["## Ablations", "Within each stage, one row per value of each axis that varies there, mean over the "
            "stage's other configs and seeds (stages differ in task and data: no row mixes them)."]
    for (stage, axis), frames in blocks.items():
        name = "report_ablation_" + re.sub(r"[^A-Za-z0-9_]+", "_", f"{stage}_{axis}")
        title = f"### {stage + ': ' if several else ''}{labels.axis_name(axis)} (`{axis}`)"
        if labels.axis_name(axis) == axis:
            title = f"### {stage + ': ' if several else ''}`{axis}`"
        text.append(_block(title, "", frames, name, out, csv))
    return "\n\n".join(text)


# ---------------------------------------------------------------- figures and samples
def _figure(path: Path | None, title: str, caption: str = "") -> str:
    if path is None:
        return ""
    return f"\n\n{caption + chr(10) * 2 if caption else ''}![{title}]({REPORT_DIR}/{path.name})"


def _figures(data: StudyData, out: Path, csv: bool) -> str:
    q = quality_name(data.quality)
    text = "## Figures"
    text += _figure(figures.quality_vs_training(data, out), "quality vs training",
                    f"One row per stage. {q}, FID, single-sample PSNR (distortion: higher is better), the "
                    "held-out loss where recorded, and the training loss where the stage's configs share its "
                    "definition (not where they differ in target, weighting or noise levels: their losses are "
                    "different quantities), against images seen (against epochs where every config's epoch is "
                    "the same data); mean ± sd over seeds; gray: the stage's trivial baselines.")
    curves = figures.curves_table(data) if csv else None
    if curves is not None and not curves.empty:
        curves.to_csv(out / "report_curves.csv", index=False)
        text += (f"\n\nEvery evaluated metric at every evaluation, mean, sd and seeds per config: "
                 f"[report_curves.csv]({out.name}/report_curves.csv)")
    text += _figure(figures.quality_vs_compute(data, out), "quality vs compute",
                    f"{q} against training time, one line per seed (seeds differ in time).")
    text += _figure(figures.time_per_epoch(data, out), "time per epoch",
                    "Time per epoch of each config: bar, the mean over seeds; dots, the seeds.")
    return text


# ---------------------------------------------------------------- markdown -> HTML
def md_to_html(text: str, title: str) -> str:
    """report.md as one HTML page: CommonMark plus tables (GitHub's pipe tables), by markdown-it-py; raw HTML in
    the text is escaped, not passed through."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(text)
    style = ("body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}"
             "th,td{border:1px solid #ccc;padding:2px 6px;font-size:13px}img{max-width:100%}")
    return (f"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n{body}</body></html>\n")
