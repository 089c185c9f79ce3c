"""Copy generated markdown into README.md, so that no number or verdict in it is typed by hand.

README.md holds blocks

    <!-- begin: PATH -->
    ...the contents of PATH...
    <!-- end: PATH -->

where PATH (relative to the repository root) is a markdown file a command wrote: `bench claims ... --out
results/reference/claims.md`, or one of the files this script itself writes from the committed results
(GENERATED below: the headline bullets and the paper study's stage table from results/reference/*/trials.csv,
the GPU line from results/gpu/run2/gpu_check.md). It also copies the headline pictures (IMAGES below) from the
report folders they come from. A file may also be a section of another: PATH#Heading takes
the lines under the first heading whose text starts with "Heading", up to the next heading.

    python scripts/sync_readme.py            # write the GENERATED files, then fill README.md's blocks
    python scripts/sync_readme.py --check    # change nothing; exit 1 if a file or a block is out of date

Exit status: 0 in sync (or synced), 1 (--check) something differs or a block's file is missing (one line
each; `--allow-missing PATH` lets that file be absent), 2 bad input (a malformed or unbalanced marker).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent
REFERENCE = REPO / "results" / "reference"
BLOCK = re.compile(r"(<!-- begin: (?P<path>[^ ]+) -->\n)(?P<body>.*?)(<!-- end: (?P=path) -->)", re.S)
MARKER = re.compile(r"<!-- (begin|end): ([^ ]+) -->")


# ---------------------------------------------------------------- numbers from the reference results

def _mean_sd(values: pd.Series, digits: int = 1) -> str:
    """'15.4 ± 0.3' over seeds (sample sd, ddof 1); the mean alone for one value."""
    if len(values) == 1:
        return f"{values.iloc[0]:.{digits}f}"
    return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"


def _trials(study: str) -> pd.DataFrame:
    t = pd.read_csv(REFERENCE / study / "trials.csv")
    return t[t["state"] == "complete"]


def _select(t: pd.DataFrame, where: dict) -> pd.DataFrame:
    """Rows of trials.csv whose `param:<key>` (or plain column) equals each value; NaN matches None."""
    rows = t
    for key, value in where.items():
        col = key if key in t.columns else f"param:{key}"
        if col not in t.columns:
            raise SystemExit(f"sync_readme: trials.csv has no column {col!r}")
        rows = rows[rows[col].isna()] if value is None else rows[rows[col] == value]
    if rows.empty:
        raise SystemExit(f"sync_readme: no complete trial matches {where}")
    return rows


# (label, study, config compared, the reference config): the ratio of their KIDs, paired by seed.
HEADLINE = [
    ("Incremental, equal epochs (N = 4, E = 40: a quarter of the images) vs batch learning",
     "paper", {"stage": "face_inpaint", "train.subsets": 4, "train.epochs_per_subset": 40},
     {"stage": "face_inpaint", "train.subsets": 1}),
    ("Incremental, equal images (N = 4, E = 160) vs batch learning",
     "paper", {"stage": "face_inpaint", "train.subsets": 4, "train.epochs_per_subset": 160},
     {"stage": "face_inpaint", "train.subsets": 1}),
    ("T = 1200 steps, terminal distortion matched, vs T = 2000",
     "timesteps", {"diffusion.timesteps": 1200, "diffusion.match_terminal": 2000},
     {"diffusion.timesteps": 2000, "diffusion.match_terminal": None}),
    ("Face colorization from face inpainting vs from scratch",
     "paper", {"stage": "face_color", "transfer_source": "face_inpaint"},
     {"stage": "face_color", "transfer_source": "scratch"}),
    ("Landscape colorization from face colorization vs from scratch",
     "paper", {"stage": "land_color", "transfer_source": "face_color"},
     {"stage": "land_color", "transfer_source": "scratch"}),
    ("Beyond the paper: EDM's log-normal noise levels vs uniform steps (face inpainting, equal images)",
     "cost", {"stage": "face_inpaint", "diffusion.loss_weighting": "none", "diffusion.noise_levels": "log_normal"},
     {"stage": "face_inpaint", "diffusion.loss_weighting": "none", "diffusion.noise_levels": "uniform"}),
]


def headline() -> str:
    """Headline bullets: each comparison's final KID×10³ as the paired seeds' mean difference with its 95% t
    interval (bench/report/stats.py), the verdict word that same interval gives (a quality verdict comes from
    the difference's interval: printing the ratio's beside it could disagree on skewed small-n data), and the
    seed count."""
    from bench.report import stats

    paper = _trials("paper")
    ratio = paper["ratio_to_trivial"]
    lines = [f"- Every model learned: {int(paper['learned'].sum())} of {len(paper)} `paper` trials "
             f"({paper['seed'].nunique()} seeds) beat their task's best trivial baseline on KID×10³, by "
             f"{1 / ratio.max():.1f}× to {1 / ratio.min():.1f}×."]
    for label, study, config, reference in HEADLINE:
        t = _trials(study)
        a, b = _select(t, config), _select(t, reference)
        p = stats.paired(a.set_index("seed")["kid"], b.set_index("seed")["kid"], "kid")
        word = p.verdict if p.n > 1 else "one seed, no verdict"
        word = "unresolved" if word.startswith("no difference") else word
        k = 1e3  # KID×10³
        diff = f"{k * p.diff:+.2g}" + (f" [{k * p.lo:+.2g}, {k * p.hi:+.2g}]" if p.n > 1 else "")
        lines.append(f"- {label}: KID×10³ {diff}, {word} ({p.n} seed{'s' if p.n != 1 else ''}; `{study}`).")
    return "\n".join(lines) + "\n"


# short names of the axes that vary within a stage (labels: `N = 4, E = 40`)
AXIS_NAMES = {"train.subsets": "N", "train.epochs_per_subset": "E"}
TRIVIAL_NAMES = {"biharmonic": "biharmonic", "mean_fill": "mean fill", "gray_copy": "gray copy"}


def stage_table(study: str = "paper") -> str:
    """One row per config of each stage (KID×10³ and FID@N: mean ± sd over seeds; PSNR of one sample and of
    the mean of 4 where mmse4.csv has it; KID over the stage's best trivial baseline), then the stage's best
    trivial baseline, from results/reference/<study>/{trials,trivial,mmse4}.csv."""
    t = _trials(study)
    trivial = pd.read_csv(REFERENCE / study / "trivial.csv")
    mmse_file = REFERENCE / study / "mmse4.csv"
    mmse = pd.read_csv(mmse_file) if mmse_file.exists() else None
    axes = [c for c in t.columns if c.startswith("param:") and c not in ("param:stage",)
            and not c.startswith("param:eval.")]  # eval.every_epochs follows from the others
    n = int(t["n_samples"].iloc[0])
    out = [f"| stage | config | seeds | images | KID×10³ | FID@{n} | PSNR (dB) | PSNR, mean of 4 | "
           "KID ÷ trivial |", "|---|---|---|---|---|---|---|---|---|"]
    for stage in t["stage"].drop_duplicates():
        rows = t[t["stage"] == stage]
        varying = [c for c in axes if rows[c].nunique() > 1]
        for _, group in rows.groupby([c for c in varying] or ["stage"], sort=False):
            first = group.iloc[0]
            label = ", ".join(f"from {first[c]}" if c == "param:transfer_source"
                              else f"{AXIS_NAMES.get(c[6:], c[6:])} = {first[c]}" for c in varying)
            label = (label + " (baseline)").strip() if first["is_baseline"] else label or "-"
            psnr_mean = "-"
            if mmse is not None:
                m = mmse[(mmse["stage"] == stage) & (mmse["transfer_source"] == first["transfer_source"])]
                psnr_mean = f"{m['psnr_mmse'].mean():.2f}" if len(m) else "-"
            out.append(f"| `{stage}` | {label} | {len(group)} | "
                       f"{int(first['images_seen']):,} | {_mean_sd(group['kid'] * 1e3)} | {_mean_sd(group['fid'])} | "
                       f"{group['psnr'].mean():.2f} | {psnr_mean} | {group['ratio_to_trivial'].mean():.2f} |")
        best = trivial[(trivial["stage"] == stage) & (trivial["trivial"] == rows["trivial_best"].iloc[0])].iloc[0]
        out.append(f"| `{stage}` | trivial: {TRIVIAL_NAMES.get(best['trivial'], best['trivial'])}"
                   f" | - | 0 | {best['kid'] * 1e3:.1f} | {best['fid']:.1f} | {best['psnr']:.2f} | - | 1.00 |")
    return "\n".join(out) + "\n"


def gpu_line(path: Path = REPO / "results" / "gpu" / "run2" / "gpu_check.md") -> str:
    """Paper-scale training speed and peak memory in gpu_check.py's table for today's CUDA default (bf16
    autocast, NCHW, cudnn.benchmark off), and DDIM-50 sampling time, as one line."""
    text = path.read_text()
    title = text.splitlines()[0].split(" on ", 1)[-1]
    model = re.search(r"Model: ([^;]+); ([^.]+)\.", text)

    def row(first_cell: str) -> list[str]:
        for line in text.splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if cells[0].startswith(first_cell):
                return cells
        raise SystemExit(f"sync_readme: {path}: no table row starting {first_cell!r}")

    bf16, ddim = row("cudnn.benchmark off"), row("DDIM, 50 steps")
    return (f"Measured on one {title} ({model.group(1)}, {model.group(2)}): training {bf16[1]} img/s in "
            f"{bf16[7]} GiB peak memory; DDIM-50 sampling {ddim[3]} s per image.\n")


# files this script writes (relative to the repository root) and the function that makes each
GENERATED = {
    "results/reference/headline.md": headline,
    "results/reference/paper/stages.md": stage_table,
    "results/gpu/summary.md": gpu_line,
}


# the README's headline pictures (committed copies, so the README renders without results/reference's report
# folders) and the report files they are copied from: python scripts/sync_readme.py copies, --check compares
IMAGES = {
    "docs/img/headline-samples.png": "results/reference/cost/report/samples-face_inpaint-preset_baseline.png",
    "docs/img/headline-kid.png": "results/reference/cost/report/quality_vs_training.png",
}


# ---------------------------------------------------------------- README blocks

def read_source(rel: str) -> str | None:
    """The text a block holds: PATH, or PATH#Heading (the lines under that heading); None if PATH is absent."""
    rel_path, _, heading = rel.partition("#")
    path = REPO / rel_path
    if not path.is_file():
        return None
    text = path.read_text()
    if not heading:
        return text if text.endswith("\n") else text + "\n"
    lines, keep, taken = text.splitlines(), False, []
    for line in lines:
        if line.startswith("#"):
            if keep:
                break
            keep = line.lstrip("#").strip().startswith(heading)
            continue
        if keep:
            taken.append(line)
    if not keep and not taken:
        raise SystemExit(f"sync_readme: {rel_path}: no heading starting {heading!r}")
    return "\n".join(taken).strip("\n") + "\n"


def check_markers(readme: Path, text: str) -> None:
    """Every begin has its end, in order, never nested, and names a path without spaces (a `PATH#Heading` whose
    heading has a space would otherwise be no marker at all and stay empty): else one line and exit status 2."""
    for line in re.findall(r"<!-- (?:begin|end):.*?-->", text):
        if not MARKER.fullmatch(line):
            print(f"error: {readme}: malformed marker {line!r} (a path without spaces: use a heading's first "
                  "word after '#')", file=sys.stderr)
            raise SystemExit(2)
    open_path = None
    for kind, rel in MARKER.findall(text):
        if kind == "begin" and open_path is None:
            open_path = rel
        elif kind == "end" and rel == open_path:
            open_path = None
        else:
            print(f"error: {readme}: marker '{kind}: {rel}' does not close 'begin: {open_path}'", file=sys.stderr)
            raise SystemExit(2)
    if open_path is not None:
        print(f"error: {readme}: 'begin: {open_path}' has no end marker", file=sys.stderr)
        raise SystemExit(2)


def sync(readme: Path, check: bool, allow_missing: set[str], generate: bool = True) -> list[str]:
    """Write (or, with check, compare) the GENERATED files (unless not generate) and README's blocks; return
    one line per problem: with check, every difference; else the blocks whose file is missing."""
    problems = []
    for rel, make in GENERATED.items() if generate else ():
        want, path = make(), REPO / rel
        if path.exists() and path.read_text() == want:
            continue
        if check:
            problems.append(f"{rel}: out of date (python scripts/sync_readme.py rewrites it)")
        else:
            path.write_text(want)
    for rel, src in IMAGES.items() if generate else ():
        path, source = REPO / rel, REPO / src
        if not source.is_file():
            problems.append(f"{src}: missing (the picture {rel} is copied from it)")
        elif not path.is_file() or path.read_bytes() != source.read_bytes():
            if check:
                problems.append(f"{rel}: differs from {src} (python scripts/sync_readme.py copies it)")
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(source.read_bytes())
    text = readme.read_text()
    check_markers(readme, text)

    def fill(m: re.Match) -> str:
        rel, body = m.group("path"), m.group("body")
        want = read_source(rel)
        if want is None:
            if rel not in allow_missing:
                problems.append(f"{rel}: missing (README block has nothing to copy)")
            return m.group(0)
        if body != want:
            problems.append(f"README block {rel}: differs from the file")
        return m.group(1) + want + m.group(4)

    new = BLOCK.sub(fill, text)
    if not check and new != text:
        readme.write_text(new)
    return [p for p in problems if check or "missing" in p]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if anything is out of date")
    parser.add_argument("--readme", type=Path, default=REPO / "README.md")
    parser.add_argument("--allow-missing", action="append", default=[], metavar="PATH",
                        help="a block whose file may be absent (left as it is)")
    args = parser.parse_args(argv)
    problems = sync(args.readme, args.check, set(args.allow_missing))
    for line in problems:
        print(line, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
