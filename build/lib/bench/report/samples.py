"""The report's qualitative section: one sample grid per config and the denoising strip (Palette Fig. 9).

A grid's rows are the first test images of the stage, the same for every config (the evaluator seeds sample i
with eval.seed + i, whatever the config or training seed); its columns, under drawn headers: condition | the
stage's best trivial baseline | the final sample of each training seed | ground truth. Cells are at least
MIN_CELL px (small images are enlarged, nearest neighbour).

Composed from what each run saved at its final evaluation, `samples/triplets-epoch<E>.png` (rows of ground
truth | input | output, lossless uint8): no network runs at report time. The baseline column is recomputed
(model/baselines.py) on the evaluator's own conditions and masks (`Evaluator.inputs`); where the run's data
cannot be loaded any more, the grid has no baseline column.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from model.errors import BenchError

from .. import records
from .gate import trivial_name
from .labels import file_stem
from .tables import StudyData, md_table, model_name

MIN_CELL = 64  # px: a 16-px smoke sample is shown 4x
MAX_ROWS = 4  # test images per grid
GAP = 2  # px between cells
HEADER_FONT = 11


def _triplets(data: StudyData, trial: pd.Series) -> tuple[Path | None, int]:
    """The trained run's last triplet grid and its epoch (None, 0 when none was saved)."""
    chain = records.read_json(data.dir / "trials" / trial["trial"] / "trial.json").get("chain", [])
    folder = data.dir / "runs" / chain[-1]["key"] / "samples" if chain else None
    grids = sorted(folder.glob("triplets-epoch*.png")) if folder and folder.is_dir() else []
    return (grids[-1], int(grids[-1].stem.removeprefix("triplets-epoch"))) if grids else (None, 0)


def split_triplets(path: Path, rows: int = MAX_ROWS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A triplet PNG (model/evaluate.py's triplet_grid) -> (ground truth, input, output), each uint8 [k, s, s, 3]
    for its first k <= rows images."""
    with Image.open(path) as im:
        a = np.asarray(im.convert("RGB"))
    s = a.shape[1] // 3
    k = min(rows, a.shape[0] // s)
    cells = a[: k * s].reshape(k, s, 3, s, 3).transpose(2, 0, 1, 3, 4)  # [column, k, s, s, 3]
    return cells[0], cells[1], cells[2]


def _baseline(data: StudyData, trial: pd.Series, gt: np.ndarray) -> tuple[str, np.ndarray] | None:
    """(name, uint8 outputs) of the stage's best trivial baseline on the grid's images, or None when there is
    none or the run's test split cannot be loaded (e.g. a copied study folder without its data)."""
    from model.baselines import BASELINES
    from model.config import RunConfig
    from model.evaluate import Evaluator, to_uint8

    best = data.complete.loc[data.complete["stage"] == trial["stage"], "trivial_best"].dropna() \
        if "trivial_best" in data.complete else pd.Series(dtype=object)
    chain = records.read_json(data.dir / "trials" / trial["trial"] / "trial.json").get("chain", [])
    cfg_file = data.dir / "runs" / chain[-1]["key"] / "config.json" if chain else None
    if best.empty or cfg_file is None or not cfg_file.exists():
        return None
    cfg = RunConfig.model_validate(records.read_json(cfg_file))
    fn = BASELINES.get(cfg.task.name, {}).get(best.iloc[0])
    if fn is None:
        return None
    try:
        targets, cond, mask = Evaluator(cfg, device="cpu").inputs()
    except (BenchError, OSError):
        return None
    k = len(gt)
    if not np.array_equal(to_uint8(targets[:k]), gt):  # not the images the run evaluated: no column
        return None
    return trivial_name(best.iloc[0]), to_uint8(fn(cond[:k], mask[:k]))


def compose(columns: list[tuple[str, np.ndarray]], min_cell: int = MIN_CELL) -> Image.Image:
    """Columns (header, uint8 [k, s, s, 3]) side by side under their headers, cells enlarged to >= min_cell."""
    k, s = columns[0][1].shape[:2]
    f = max(1, math.ceil(min_cell / s))
    cell = s * f
    font = ImageFont.load_default(size=HEADER_FONT)
    header = 3 * (HEADER_FONT + 3) + 4  # up to three lines
    width = len(columns) * cell + (len(columns) - 1) * GAP
    out = Image.new("RGB", (width, header + k * cell + (k - 1) * GAP), "white")
    draw = ImageDraw.Draw(out)
    for j, (title, images) in enumerate(columns):
        x = j * (cell + GAP)
        draw.multiline_text((x + cell / 2, header / 2), _wrap(title, cell, font, draw), fill="black", font=font,
                            anchor="mm", align="center", spacing=2)
        for i, img in enumerate(images):
            out.paste(Image.fromarray(img).resize((cell, cell), Image.NEAREST), (x, header + i * (cell + GAP)))
    return out


def _wrap(text: str, width: int, font, draw) -> str:
    """At most three lines that fit `width` px (words moved to the next line, the rest cut)."""
    words, lines = text.split(), [""]
    for w in words:
        trial = f"{lines[-1]} {w}".strip()
        if draw.textlength(trial, font=font) <= width or not lines[-1]:
            lines[-1] = trial
        elif len(lines) < 3:
            lines.append(w)
        else:
            break
    return "\n".join(lines)


def _copy_scaled(src: Path, dst: Path, min_cell: int, cells: int) -> None:
    """Copy a strip of `cells` square frames, enlarged by an integer factor to frames of >= min_cell px."""
    with Image.open(src) as im:
        k = max(1, math.ceil(min_cell / max(1, im.width // cells)))
        (im.resize((im.width * k, im.height * k), Image.NEAREST) if k > 1 else im).save(dst)


def section(data: StudyData, out: Path) -> str:
    """The report's "Qualitative results" markdown; writes the grids and the strip into `out`."""
    rows, strip, baselines = [], None, {}
    for _, trials in data.complete.groupby("label", sort=False):
        trials = trials.sort_values("seed")
        found = [(t, *_triplets(data, t)) for _, t in trials.iterrows()]
        found = [(t, p, e) for t, p, e in found if p is not None]
        if not found:
            continue
        first = found[0][0]
        gt, cond, _ = split_triplets(found[0][1])
        stage = first["stage"]
        if stage not in baselines:  # the same images for every config of the stage: computed once
            baselines[stage] = _baseline(data, first, gt)
        columns = [("condition", cond)]
        if baselines[stage] is not None and len(baselines[stage][1]) == len(gt):
            columns.append((f"trivial: {baselines[stage][0]}", baselines[stage][1]))
        columns += [(f"sample seed {t['seed']}", split_triplets(p)[2][: len(gt)]) for t, p, _ in found]
        columns.append(("ground truth", gt))
        name = f"samples-{re.sub(r'[^A-Za-z0-9_.-]+', '_', stage)}-{file_stem(model_name(first))}.png"
        compose(columns).save(out / name)
        epochs = "/".join(dict.fromkeys(str(e) for _, _, e in found))
        rows.append((stage, model_name(first), epochs, f"![{model_name(first)}]({out.name}/{name})"))
        samples_dir = found[0][1].parent
        better = strip is None or (first["is_baseline"] and not strip[1])  # the baseline's strip if it has one
        if (samples_dir / "denoising-strip.png").exists() and better:
            strip = (samples_dir / "denoising-strip.png", bool(first["is_baseline"]), model_name(first), len(gt))
    if not rows:
        return "## Qualitative results\n\nNo sample images were saved (eval.save_images = 0)."
    table = pd.DataFrame(rows, columns=["Stage", "Model", "Epoch", "Samples"])
    if table["Stage"].nunique() == 1:
        table = table.drop(columns="Stage")
    text = ["## Qualitative results",
            "Each grid: the first test images of the stage in rows, the same for every config; columns: the "
            "condition, the stage's best trivial baseline on it, the final sample of each training seed (EMA "
            "weights) and the ground truth.",
            md_table(table)]
    if strip is not None:
        with Image.open(strip[0]) as im:
            frames = im.width // im.height
        _copy_scaled(strip[0], out / "denoising-strip.png", MIN_CELL, frames)
        text.append(f"Denoising strip of {strip[2]}: the first test sample from pure noise (left) to the output "
                    "(right), at noise levels evenly spaced in log-SNR (model/sample.py), known pixels pasted "
                    f"back at every step.\n\n![denoising strip]({out.name}/denoising-strip.png)")
    return "\n\n".join(text)


__all__ = ["section", "compose", "split_triplets"]
