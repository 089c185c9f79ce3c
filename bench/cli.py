"""The `bench` command: run ablation studies, train one config, evaluate, FID, status, reports, perf.

Exit status: 0 success; 1 `bench run` (or `bench status --check`) found a failed trial (recorded, report
written, the last line says how many and where); 2 bad input (a malformed study, a missing folder, a damaged
checkpoint: one line); 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
from pathlib import Path

from model.errors import BenchError, ConfigError

from .presets import DEFAULT_SCALE, SCALES

DEFAULT_RESULTS = Path("results")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (argparse prints the error in one line and exits with status 2)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got '{text}'")
    return value


def _storage_default(results: Path) -> str:
    return f"sqlite:///{results}/bench.db"


def parse_budget(text: str | None):
    """'90' or '90m' -> minutes; '3ep' -> epochs (the paper's Colab sessions)."""
    from model.trainer import Budget

    if text is None:
        return Budget()
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(m|min|ep|epochs?)?\s*", text)
    if not m:
        raise ConfigError(f"--session-budget {text!r}: use minutes ('90m') or epochs ('3ep')")
    value, unit = float(m.group(1)), m.group(2) or "m"
    if value <= 0:
        raise ConfigError(f"--session-budget {text!r}: must be positive")
    return Budget(epochs=int(value)) if unit.startswith("ep") else Budget(minutes=value)


def _load_study(args):
    """The study of `args.file` at `--scale`, with `--set` and `--seeds`; a bad option names the file."""
    from .study import load_study, parse_seeds, parse_sets

    try:
        sets, seeds = parse_sets(args.set), parse_seeds(args.seeds)
    except ConfigError as e:
        raise ConfigError(f"{args.file}: {e}") from None
    return load_study(args.file, args.scale, sets, seeds)


def cmd_run(args) -> int:
    if args.trials is not None and args.trials < 1:
        raise ConfigError(f"{args.file}: --trials {args.trials}: must be at least 1")
    study = _load_study(args)  # before importing torch: a bad file fails at once

    from . import dryrun, runner
    from .preflight import preflight
    from .progress import StudyProgress, console, print_table

    try:
        budget = parse_budget(args.session_budget)
    except ConfigError as e:
        raise ConfigError(f"{args.file}: {e}") from None
    sizes = preflight(study, args.results)
    if args.dry_run:
        dryrun.print_plan(study, sizes, args.device)
        return 0
    try:
        storage = runner.make_storage(args.storage) if args.storage else None  # a bad URL fails before any write
    except ConfigError as e:
        raise ConfigError(f"{args.file}: {e}") from None
    args.results.mkdir(parents=True, exist_ok=True)
    storage = storage or runner.make_storage(_storage_default(args.results))
    with StudyProgress(len(study.trials), f"{study.name} ({study.scale})") as progress:
        summary = runner.run_study(study, args.results, storage, device=args.device, max_trials=args.trials,
                                   budget=budget, retry_failed=args.retry_failed, progress=progress,
                                   wait=getattr(args, "poll", None),  # bench worker: until none is left
                                   train=not getattr(args, "no_train", False),
                                   sizes=sizes)  # the trial order weighs each run by its cost on its data
    rows = runner.study_status(study, args.results, storage)
    print_table(f"study {study.name}: {summary.ran} run, {summary.skipped} skipped, {summary.failed} failed",
                rows, ["stage", "config", "seed", "state"])
    if summary.skipped:
        console.print("skipped: finished before this call, or run by another worker")
    _stale_line(study, args.results / study.name)
    if summary.paused:
        console.print("session budget reached: run the same command again to resume")
    elif not args.no_report:
        from .report import write_report

        path = write_report(args.results / study.name, formats=("md", "csv"))
        console.print(f"report: {path}")
    from .report.gate import study_line

    if unlearned := study_line(args.results / study.name):  # issue 13: no verdict on unlearned trials
        print(unlearned, flush=True)
    return _failed_line(rows, args.results / study.name, f"{args.file} --retry-failed")


def _failed_line(rows: list[dict], study_dir: Path, retry: str) -> int:
    """Exit status 1 and a last line naming the failed trials and where their reasons are, or 0."""
    failed = [r for r in rows if r["state"] == "failed"]
    if not failed:
        return 0
    several = len({r["stage"] for r in rows}) > 1
    names = "; ".join(f"{r['stage'] + ': ' if several else ''}{r.get('config', r['label'])} seed {r['seed']}"
                      for r in failed[:3]) + ("; ..." if len(failed) > 3 else "")
    print(f"{len(failed)} of {len(rows)} trials failed ({names}): reasons in {study_dir / 'trials.csv'} "
          f"(column reason) and {study_dir / 'trials'}/<trial>/traceback.txt; `bench run {retry}` runs them again",
          flush=True)
    return 1


def cmd_status(args) -> int:
    from .progress import print_table
    from .runner import make_storage, study_status
    study = _load_study(args)
    try:  # a server storage (PostgreSQL) holds the claims: "running" on any host
        storage = make_storage(args.storage) if args.storage else None
    except ConfigError as e:
        raise ConfigError(f"{args.file}: {e}") from None
    rows = study_status(study, args.results, storage)
    print_table(f"study {study.name} ({study.scale})", rows, ["trial", "stage", "config", "seed", "state"])
    _stale_line(study, args.results / study.name)
    if not args.check:
        return 0
    if (code := _failed_line(rows, args.results / study.name, f"{args.file} --retry-failed")) != 0:
        return code
    unfinished = [r for r in rows if r["state"] != "complete"]
    if unfinished:
        states = ", ".join(sorted({r["state"] for r in unfinished}))
        print(f"{len(unfinished)} of {len(rows)} trials not finished ({states}): `bench run {args.file}` runs them",
              flush=True)
        return 1
    return 0


def _stale_line(study, study_dir: Path) -> None:
    """How many finished trials of the folder the study file (as loaded now) no longer asks for."""
    from .records import point_id, stale_keys

    finished = [p.parent.name for p in sorted((study_dir / "trials").glob("*/trial.json"))]
    if stale := stale_keys(study_dir, finished, current=[point_id(t.point) for t in study.trials]):
        print(f"{len(stale)} finished trial(s) in {study_dir} are no longer in {study.path} (stale: their point "
              f"removed or changed): kept on disk and in trials.csv, left out of the report's tables (bench report "
              f"--include-stale includes them)", flush=True)


def cmd_list(args) -> int:
    import optuna

    from .progress import print_table
    from .report.tables import SCALE, quality_name
    from .runner import make_storage
    from .search_space import is_old_format

    storage = args.storage or _storage_default(args.results)
    if storage.startswith("sqlite:///") and not Path(storage[len("sqlite:///"):]).exists():
        print(f"no studies yet ({storage})")
        return 0
    rows = []
    for s in optuna.get_all_study_summaries(storage=make_storage(storage)):
        old = is_old_format(s)  # written before one parameter per axis: still readable, no longer written
        metric = s.user_attrs.get("quality_metric", "")
        header, scale = quality_name(metric), SCALE.get(metric, 1)  # as the reports show it
        rows.append({"study": s.study_name, "trials": s.n_trials, "scale": s.user_attrs.get("scale", ""),
                     "best": f"{header} {s.best_trial.value * scale:.4g}" if s.best_trial else "",
                     "format": "old: one `point` parameter (bench run writes <study>/<stage>)" if old else ""})
    print_table(f"studies in {storage}", rows)
    return 0


def cmd_train(args) -> int:
    from model.trainer import train

    from . import yamlio
    from .progress import StudyProgress, console
    from .study import _flatten, parse_sets, resolve_config

    raw = yamlio.load(args.config, "config") or {}  # as study files: duplicate keys and YAML 1.1 traps refused
    if not isinstance(raw, dict):
        raise ConfigError(f"{args.config}: a config file must be a mapping (data, task, model, ...)")
    try:
        cfg = resolve_config([("scale preset", SCALES[args.scale]), ("config", _flatten(raw)),
                              ("--set", parse_sets(args.set))])
    except ConfigError as e:
        raise ConfigError(f"{args.config}: {e}") from None
    run_dir = args.run_dir or Path(args.results) / "train" / Path(args.config).stem
    budget = parse_budget(args.session_budget)
    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    if world > 1:
        cfg.train.processes = world  # under torchrun: its process count is this run's (recorded in config.json)
    elif cfg.train.processes > 1:  # start the K ranks here (bench/launch.py); each runs this command again
        from .launch import run_ranks

        return run_ranks(cfg, run_dir, args.device, args.init_from, budget, args.evaluate)
    evaluate_fn = None
    if args.evaluate:
        from model.evaluate import Evaluator

        evaluate_fn = Evaluator(cfg, device=args.device, out_dir=Path(run_dir) / "samples")
    with StudyProgress(1, f"train {run_dir}") if rank == 0 else contextlib.nullcontext() as progress:
        result = train(cfg, run_dir, device=args.device, init_from=args.init_from, budget=budget,
                       evaluate_fn=evaluate_fn, on_step=progress.step if rank == 0 else None)
    if rank > 0:
        return 0
    last = result.history[-1] if result.history else {}
    console.print(f"{result.status}: epoch {last.get('epoch', 0)}/{cfg.train.total_epochs}, "
                  f"{last.get('images_seen', 0)} images seen, checkpoint {result.checkpoint}")
    return 0


def cmd_evaluate(args) -> int:
    import json

    from model.evaluate import evaluate

    metrics = evaluate(args.run_dir, split=args.split, n_samples=args.n_samples, sampler=args.sampler,
                       steps=args.steps, seed=args.seed, device=args.device, mmse_samples=args.mmse_samples,
                       phema_std=args.phema_std)
    print(json.dumps(metrics, indent=2))
    print(f"samples, triplets and metrics.json in {metrics['out_dir']}", file=sys.stderr)
    return 0


def cmd_fid(args) -> int:
    from model.device import resolve_device
    from model.metrics.fid import fid_label, fid_with_count, save_stats

    args.device = resolve_device(args.device)
    if args.save_stats:  # as `python -m pytorch_fid --save-stats FOLDER OUT.npz`
        save_stats(args.path_a, args.path_b, device=args.device, batch_size=args.batch_size)
        return 0
    value, n = fid_with_count(args.path_a, args.path_b, device=args.device, batch_size=args.batch_size)
    print(f"{fid_label(n)}:  {value}")  # pytorch-fid's "FID:  <value>"; FID@N below 2048 images
    return 0


def cmd_report(args) -> int:
    from .report import write_report

    path = write_report(Path(args.study_dir), formats=tuple(args.format), include_stale=args.include_stale)
    print(path)
    return 0


def cmd_claims(args) -> int:
    """The paper-claims table of several study files' results (published folders too), to stdout or --out."""
    from model.atomicio import atomic_write_bytes

    from .report.published import brief_markdown, claims_markdown, published_claims

    raw, view = published_claims([Path(f) for f in args.files], args.results)
    command = "bench claims " + " ".join(args.files) + f" --results {args.results}"
    command += (f" --out {args.out}" if args.out else "") + (f" --brief {args.brief}" if args.brief else "")
    text = claims_markdown(view, command)
    if args.out is None and args.brief is None:
        print(text, end="")
    elif args.out is not None:
        atomic_write_bytes(Path(args.out), lambda f: f.write(text.encode()))
        print(args.out)
    if args.brief is not None:
        brief = brief_markdown(raw, command, (args.out or args.brief.with_name("claims.md")).as_posix())
        atomic_write_bytes(Path(args.brief), lambda f: f.write(brief.encode()))
        print(args.brief)
    return 0


def cmd_data(args) -> int:
    from model.config import DataConfig
    from model.data import describe_source

    from .progress import print_table

    rows = []
    for source in args.source:
        cfg = DataConfig(source=source, path=args.path, image_size=args.image_size)
        rows.append(describe_source(cfg))
    print_table("images each source yields", rows)
    return 0


def cmd_perf(args) -> int:
    from .perf import run_perf

    run_perf(out_dir=Path(args.out), quick=args.quick, device=args.device)
    return 0


class _Parser(argparse.ArgumentParser):
    """Bad arguments: one line (`bench run: error: ...`) and exit status 2, like every other bad input."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="bench", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(sp, scale=True, seeds=True, results=True):
        if results:
            sp.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="results folder (default: results)")
        sp.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
        if scale:
            sp.add_argument("--scale", default=DEFAULT_SCALE, choices=list(SCALES),
                            help=f"size preset (default: {DEFAULT_SCALE})")
            if seeds:
                sp.add_argument("--seeds", metavar="S,S,...",
                                help="run these seeds instead of the study file's, e.g. --seeds 0,1,2 (error bars)")
            sp.add_argument("--set", action="append", metavar="KEY=VALUE",
                            help="override a config key after the study file, e.g. --set data.path=/data/celeba "
                                 "(prefix a stage name to scope it: --set land_color.data.path=...)")

    epilog = ("exit status: 0 no trial failed (finished, or left for the next call by --trials, --session-budget or "
              "other workers); 1 a trial of the study failed (recorded, report written; the last line says how many "
              "and where); 2 bad input")
    for name, help_text in (("run", "run (or resume) an ablation study: every sweep point x seed"),
                            ("worker", "run, then wait for other workers' trials and take over those whose worker "
                                       "died; exit when every trial is finished (one per machine on a shared study)")):
        sp = sub.add_parser(name, help=help_text, epilog=epilog)
        sp.add_argument("file", help="study file, e.g. ablations/timesteps.yaml")
        common(sp)
        sp.add_argument("--storage", help="Optuna storage: a database URL (default: sqlite:///<results>/bench.db; "
                                          "postgresql+psycopg2://USER@HOST/DB for workers on several machines) or a "
                                          "journal file (journal:PATH or PATH.log) for many workers on one machine")
        sp.add_argument("--trials", type=int, help="run at most N trials in this call")
        sp.add_argument("--dry-run", action="store_true",
                        help="print the expanded grid and estimated cost, run nothing")
        sp.add_argument("--session-budget", help="stop cleanly after this many minutes ('90m') or epochs ('3ep')")
        sp.add_argument("--retry-failed", action="store_true", help="run failed trials again")
        sp.add_argument("--no-report", action="store_true", help="do not write report.md at the end")
        if name == "run":
            sp.add_argument("--no-train", action="store_true",
                            help="train nothing: settle the finished trials, write study.json, the records and the "
                                 "report (e.g. after copying in run folders trained elsewhere)")
        if name == "worker":
            sp.add_argument("--poll", type=float, default=10.0, metavar="SECONDS",
                            help="look again every SECONDS while other workers hold unfinished trials (default: 10)")
        sp.set_defaults(func=cmd_run)

    sp = sub.add_parser("status", help="trials of a study and their states")
    sp.add_argument("file")
    common(sp)
    sp.add_argument("--storage", help="the study's Optuna storage when it is PostgreSQL (claims live there)")
    sp.add_argument("--check", action="store_true",
                    help="exit status 0 only when every trial completed, else 1 (the last line says which failed "
                         "or are not finished); 2 bad input")
    sp.set_defaults(func=cmd_status)

    sp = sub.add_parser("list", help="studies in the Optuna storage")
    common(sp, scale=False)
    sp.add_argument("--storage")
    sp.set_defaults(func=cmd_list)

    sp = sub.add_parser("train", help="train one config (YAML of data/task/model/diffusion/train/eval keys)")
    sp.add_argument("config")
    common(sp, seeds=False)  # one run: its seed is train.seed (--set train.seed=1)
    sp.add_argument("--run-dir", type=Path, help="run folder (default: <results>/train/<config name>)")
    sp.add_argument("--init-from", type=Path, help="start from another run's checkpoint (transfer)")
    sp.add_argument("--session-budget", help="stop cleanly after this many minutes ('90m') or epochs ('3ep')")
    sp.add_argument("--evaluate", action="store_true",
                    help="evaluate as bench run does (eval.* keys; samples in <run-dir>/samples)")
    sp.set_defaults(func=cmd_train)

    sp = sub.add_parser("evaluate", help="sample a trained run on a split and compute FID/KID/PSNR/SSIM")
    sp.add_argument("run_dir", type=Path)
    common(sp, scale=False, results=False)  # writes into RUN_DIR/eval/
    sp.add_argument("--split", default="test", choices=["train", "test"])
    sp.add_argument("--n-samples", type=positive_int)
    sp.add_argument("--sampler", choices=["ddim", "ddpm"])
    sp.add_argument("--steps", type=positive_int)
    sp.add_argument("--seed", type=int)
    sp.add_argument("--mmse-samples", type=positive_int, metavar="K",
                    help="also score L1/PSNR/SSIM of the mean of K samples per input (keys *_mmse; K times the "
                         "sampling); default: the run's eval.mmse_samples")
    sp.add_argument("--phema-std", type=float, metavar="SIGMA_REL",
                    help="score the post-hoc EMA of this relative length (e.g. 0.07), rebuilt from "
                         "RUN_DIR/phema/ (a run trained with train.phema_stds; model/phema.py)")
    sp.set_defaults(func=cmd_evaluate)

    sp = sub.add_parser("fid", help="FID between two folders or .npz stats (as python -m pytorch_fid)")
    sp.add_argument("path_a")
    sp.add_argument("path_b")
    sp.add_argument("--batch-size", type=int, default=50)
    sp.add_argument("--device", default="auto")
    sp.add_argument("--save-stats", action="store_true", help="write PATH_A's statistics to PATH_B (.npz)")
    sp.set_defaults(func=cmd_fid)

    sp = sub.add_parser("report", help="write report.md, CSV tables and figures for a study folder")
    sp.add_argument("study_dir")
    sp.add_argument("--format", nargs="+", default=["md", "csv"], choices=["md", "csv", "html"])
    sp.add_argument("--include-stale", action="store_true",
                    help="also tabulate finished trials whose point the study file no longer has (by default "
                         "they are only listed, under 'Points no longer in the study file')")
    sp.set_defaults(func=cmd_report)

    sp = sub.add_parser("claims", help="the paper-claims table (study files' `claims:`) over several studies' results",
                        epilog="Reads each study's trials.csv, records.csv(.gz), trivial.csv and study.json under "
                               "--results (published copies too); a run two studies share counts once.")
    sp.add_argument("files", nargs="+", help="study files (ablations/*.yaml) with a claims: section")
    sp.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="the folder holding the studies' results")
    sp.add_argument("--out", type=Path, default=None, help="write the markdown page here (default: print it)")
    sp.add_argument("--brief", type=Path, default=None,
                    help="also write the paper's claims in short here (ratio, interval, verdict: the README's table)")
    sp.set_defaults(func=cmd_claims)

    sp = sub.add_parser("data", help="how many images each data source yields per split")
    sp.add_argument("source", nargs="+", choices=["faces", "landscapes", "folder", "places2", "synthetic-faces",
                                                   "synthetic-landscapes"])
    sp.add_argument("--path", help="folder for folder/places2 (or instead of the Debian photos)")
    sp.add_argument("--image-size", type=int, default=32)
    sp.set_defaults(func=cmd_data)

    sp = sub.add_parser("perf", help="measure throughput against peers and the machine's limits")
    sp.add_argument("--out", default="results/perf")
    sp.add_argument("--quick", action="store_true", help="fewer repeats (for a smoke check)")
    sp.add_argument("--device", default="auto")
    sp.set_defaults(func=cmd_perf)
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help (0) or a bad argument (2, already printed in one line)
        return e.code if isinstance(e.code, int) else 2
    if getattr(args, "device", None) not in (None, "auto"):
        from model.device import resolve_device

        try:
            resolve_device(args.device)
        except BenchError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    try:
        return args.func(args)
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk, a folder we may not write, a lost mount: finished work stays intact
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or e} (finished trials and records are intact; "
              f"fix it and run the same command again)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
