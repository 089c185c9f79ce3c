"""Live progress for long work (rich): the study (trials done / total) and the current run's steps."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

console = Console(stderr=True)


class StudyProgress:
    """Two bars: trials of the study, and epochs/steps of the run being trained (loss, img/s, ETA)."""

    def __init__(self, total_trials: int, title: str):
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=console, transient=False)
        self.study_task = self.progress.add_task(title, total=total_trials, info="")
        self.run_task = self.progress.add_task("run", total=1, info="", visible=False)
        self._epoch = None
        # Not a terminal (a log file, a batch job): rich draws its bars only at the end, so each trial's start
        # and end is also a plain line.
        self.plain = not console.is_terminal
        self._started = 0.0

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def _line(self, text: str) -> None:
        if self.plain:
            console.print(f"{time.strftime('%H:%M:%S')} {text}", soft_wrap=True)

    def trial_skipped(self, trial) -> None:
        self.progress.advance(self.study_task)

    def trial_started(self, trial) -> None:
        self.progress.update(self.study_task, info=f"{trial.label} seed={trial.seed}")
        self._epoch = None
        self._started = time.perf_counter()
        self._line(f"started {trial.label} seed={trial.seed}")

    def trial_finished(self, trial, state: str) -> None:
        if state != "paused":
            self.progress.advance(self.study_task)
        self._line(f"{state} {trial.label} seed={trial.seed} in {time.perf_counter() - self._started:.0f} s")
        self.progress.update(self.run_task, visible=False)
        if state == "failed":
            console.print(f"[red]trial {trial.label} seed={trial.seed} failed[/red] (see trials.csv)")

    def step(self, info: dict) -> None:
        key = (info["epoch"], info.get("subset"))
        if key != self._epoch:  # a new epoch: reset the run bar to its batches
            self._epoch = key
            self.progress.reset(self.run_task, total=info["steps"], visible=True)
        desc = f"epoch {info['epoch']}/{info['epochs']} subset {info['subset']}/{info['subsets']}"
        self.progress.update(self.run_task, completed=info["step"], description=desc,
                             info=f"loss {info['loss']:.4f}  {info['images_per_second']:.1f} img/s")


def print_table(title: str, rows: list[dict], columns: list[str] | None = None) -> None:
    if not rows:
        console.print(f"{title}: (none)")
        return
    columns = columns or list(rows[0])
    table = Table(title=title)
    for c in columns:
        table.add_column(c)
    for r in rows:
        table.add_row(*[_fmt(r.get(c, "")) for c in columns])
    Console().print(table)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
