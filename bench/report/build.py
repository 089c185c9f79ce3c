"""`bench report`: `report.md` for a study folder, with the CSV tables and PNG figures it embeds in `report/`.

Every link is relative to the study folder, so the folder can be copied or rendered on GitHub as is. All the
numbers come from `trials.csv` / `records.csv` and the runs' files (see tables.py); the findings are
sentences computed from them (findings.py). `report/` belongs to the report: it is emptied and rewritten.
"""

from __future__ import annotations

import html
import json
import math
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from PIL import Image

from model.atomicio import atomic_write_bytes

from .. import records
from . import figures, tables
from .findings import findings
from .tables import FID_RELIABLE_N, StudyData, fmt, md_table, quality_name

REPORT_DIR = "report"


def write_report(study_dir: Path, formats=("md", "csv")) -> Path:
    """Write report.md (plus report/*.csv when 'csv' in formats, report.html when 'html'); return its path."""
    study_dir = Path(study_dir)
    records.published_copy(study_dir)
    data = tables.load(study_dir)
    out = study_dir / REPORT_DIR
    if out.exists():
        shutil.rmtree(out)
    out.mkdir()
    csv = "csv" in formats
    parts = [_header(data)]
    if data.complete.empty:
        parts.append("## Results\n\nNo trial completed: nothing to tabulate.")
    else:
        qual, eff, reach = tables.quality_table(data), tables.efficiency_table(data), tables.reach_table(data)
        parts += [_paper_tables(data, qual, eff, out, csv), _ablations(data, out, csv)]
        if not reach[0].empty:
            parts.append(_block("## Transfer: epochs to reach the from-scratch quality", _REACH_NOTE, reach,
                                "report_transfer_reach", out, csv)
                         + _figure(figures.transfer_reach(reach[0], out), "epochs to reach"))
        parts += [_figures(data, out), _qualitative(data, out),
                  "## Findings\n\n" + "\n".join(f"- {s}" for s in findings(data, qual[0], eff[0], reach[0]))]
    failed = tables.failed_table(data)
    if not failed.empty:
        parts.append("## Failed trials\n\n" + md_table(failed))
    text = "\n\n".join(parts) + "\n"
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


def _header(data: StudyData) -> str:
    m, trials = data.meta, data.trials
    info = [records.read_json(data.dir / "trials" / k / "trial.json") for k in trials["trial"]]
    stamps = [(data.dir / "trials" / k / "trial.json").stat().st_mtime for k in trials["trial"]]
    when = sorted(datetime.fromtimestamp(s, timezone.utc).strftime("%Y-%m-%d %H:%M UTC") for s in stamps)
    done, failed = len(data.complete), int((trials["state"] != "complete").sum())
    pending = max(0, int(m.get("trials", len(trials))) - len(trials))
    q = data.quality
    rows = [("Study file", f"`{m.get('file', '?')}`"), ("Scale", m.get("scale", "?")),
            ("Quality metric", f"{quality_name(q)} (lower is better)" if q != "psnr" else q),
            ("Baseline", ", ".join(f"{k} = {v}" for k, v in m.get("baseline", {}).items()) or "none"),
            ("Swept axes", ", ".join(f"`{a}`" for a in m.get("axes", [])) or "none"),
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
    root = data.dir.parent
    results = "" if root.name == "results" and not root.is_absolute() else f" --results {root}"
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
             f"```bash\nbench run {m.get('file', '<file>')} --scale {m.get('scale', '?')}{results}\n"
             f"bench report {data.dir}\n```"]
    return "\n\n".join(t for t in text if t)


# ---------------------------------------------------------------- tables
_REACH_NOTE = ("The first evaluated epoch at which each run's quality metric is at least as good as the "
               "from-scratch run's final value (mean over seeds); 'not reached' where it never is within its "
               "epochs. Hours count the target stage's own training only.")


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
    seeds = ("Mean ± std over seeds" if data.multi_seed
             else "One seed per config: no error bars (KID ± is the estimator's std over subsets of 1000, "
                  "shown only when there are more samples than that)")
    ns = _joined(fmt(v) for v in sorted(n.unique()))
    fid_note = (f" FID@N is computed from N = {ns} generated samples; with fewer than {FID_RELIABLE_N} "
                "samples FID is biased upward and only comparable at equal N." if data.has_fid else "")
    base = ", ".join(f"{k} = {v}" for k, v in data.meta.get("baseline", {}).items()) or "none"
    effic_note = (f"Speed-up = the total training hours of the baseline ({base}) of the same stage / this "
                  "config's (means over seeds; one seed: trials.csv's `speedup`); per epoch: the same with "
                  "the time per epoch. Training time excludes evaluation. Optimizer steps can differ at equal "
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
        return "## Ablations\n\nNo swept axis: a single configuration."
    text = ["## Ablations", "One row per value of each swept axis, mean over the other axes and seeds."]
    for axis, frames in blocks.items():
        name = "report_ablation_" + re.sub(r"[^A-Za-z0-9_]+", "_", axis)
        text.append(_block(f"### `{axis}`", "", frames, name, out, csv))
    return "\n\n".join(text)


# ---------------------------------------------------------------- figures and samples
def _figure(path: Path | None, title: str, caption: str = "") -> str:
    if path is None:
        return ""
    return f"\n\n{caption + chr(10) * 2 if caption else ''}![{title}]({REPORT_DIR}/{path.name})"


def _figures(data: StudyData, out: Path) -> str:
    q = quality_name(data.quality)
    text = "## Figures"
    text += _figure(figures.quality_vs_epoch(data, out), "quality vs epoch",
                    f"{q}, FID and training loss against epochs (mean ± sd over seeds), at evaluated epochs.")
    text += _figure(figures.quality_vs_compute(data, out), "quality vs compute",
                    f"{q} against images seen and training hours: configs compared at equal compute.")
    text += _figure(figures.time_per_epoch(data, out), "time per epoch", "Time per epoch of each config.")
    return text


def _copy_scaled(src: Path, dst: Path, min_width: int) -> None:
    """Copy a PNG, enlarged by an integer factor (nearest neighbour) when it is narrower than min_width."""
    with Image.open(src) as im:
        k = max(1, math.ceil(min_width / im.width))
        (im.resize((im.width * k, im.height * k), Image.NEAREST) if k > 1 else im).save(dst)


def _qualitative(data: StudyData, out: Path) -> str:
    rows, strip = [], None
    firsts = data.complete.drop_duplicates("label")
    for i, (_, t) in enumerate(firsts.iterrows()):
        chain = records.read_json(data.dir / "trials" / t["trial"] / "trial.json").get("chain", [])
        samples = data.dir / "runs" / chain[-1]["key"] / "samples" if chain else None
        grids = sorted(samples.glob("triplets-epoch*.png")) if samples else []
        if grids:
            name = f"triplets-{i:02d}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', t['label'])[:60]}.png"
            _copy_scaled(grids[-1], out / name, 192)
            epoch = int(grids[-1].stem.removeprefix("triplets-epoch"))
            rows.append((tables.model_name(t), t["stage"], f"{epoch} (seed {t['seed']})",
                         f"![{t['label']}]({REPORT_DIR}/{name})"))
        better = strip is None or (t["is_baseline"] and not strip[1])  # the baseline's strip if it has one
        if samples and (samples / "denoising-strip.png").exists() and better:
            strip = (samples / "denoising-strip.png", bool(t["is_baseline"]), tables.model_name(t))
    if not rows:
        return "## Qualitative results\n\nNo sample images were saved (eval.save_images = 0)."
    text = ["## Qualitative results",
            "Each grid: one test sample per row; columns: ground truth | input | output "
            "(the model's final evaluation, EMA weights).",
            md_table(pd.DataFrame(rows, columns=["Model", "Stage", "Epoch", "Samples"]))]
    if strip is not None:
        _copy_scaled(strip[0], out / "denoising-strip.png", 512)
        text.append(f"Denoising strip of {strip[2]}: the first test sample from pure noise (left) to the "
                    f"output (right), known pixels pasted back at every step.\n\n"
                    f"![denoising strip]({REPORT_DIR}/denoising-strip.png)")
    return "\n\n".join(text)


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
