"""Checks that need more than the study file (data sizes, transfer checkpoints, a writable results folder),
run before anything is written, so bad input fails in one line with nothing half-done."""

from __future__ import annotations

import json
import os
from pathlib import Path

from model.checkpoint import load_checkpoint
from model.data import load_split
from model.errors import BenchError, ConfigError, DataError
from model.trainer import check_architecture

from .cost import size_key
from .study import Study

RESERVED = {"reference", "perf"}  # results/reference and results/perf hold committed results


def check_results_root(results_root: Path) -> None:
    """Refuse a results folder we cannot write to before any work starts."""
    root = Path(results_root)
    if root.exists() and not root.is_dir():
        raise BenchError(f"{root}: results folder is a file, not a folder (use --results DIR)")
    blocker = next((p for p in root.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise BenchError(f"{root}: cannot create the results folder: '{blocker}' is a file (use --results DIR)")
    probe = root if root.exists() else next((p for p in root.parents if p.exists()), Path("."))
    if not os.access(probe, os.W_OK | os.X_OK):
        raise BenchError(f"{root}: results folder is not writable (use --results DIR)")


def check_same_configuration(study: Study, results_root: Path) -> None:
    """Refuse a results folder whose finished trials trained another configuration of the same sweep points
    (another --scale or --set): a trial's folder is named by its point and seed, so they would be taken as done
    and reported as this configuration's results."""
    study_dir = Path(results_root) / study.name
    for trial in study.trials:
        done = study_dir / "trials" / trial.key / "trial.json"
        if not done.exists():
            continue
        try:
            ran = json.loads(done.read_text())["chain"][-1]["key"]
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            continue  # unreadable: the runner's own checks report it
        if ran != trial.run.key:
            raise ConfigError(
                f"{study_dir}: its finished trials ran another configuration of this study (another --scale or "
                f"--set: trial {trial.label} seed {trial.seed} trained {ran}, this call would train "
                f"{trial.run.key}); use another --results folder, or remove {study_dir}")


def preflight(study: Study, results_root: Path) -> dict:
    """Validate what only the data can tell; returns {data source: (train, test) sizes} for the record."""
    where = str(study.path)
    if study.name in RESERVED:
        raise ConfigError(f"{where}: name {study.name!r} is reserved for committed results; choose another")
    check_results_root(results_root)
    check_same_configuration(study, results_root)
    sizes: dict[str, tuple[int, int]] = {}
    seen = set()
    for trial in study.trials:
        for run in trial.run.chain():
            data = run.config.data
            key = data.model_dump_json()
            if key not in seen:
                seen.add(key)
                try:
                    n_train = len(load_split(data, "train").images)
                    n_test = len(load_split(data, "test").images)
                except DataError as e:
                    raise DataError(f"{where}: stage {run.stage}: {e}") from None
                sizes[size_key(data)] = (n_train, n_test)
            n_train = sizes[size_key(data)][0]
            if run.config.train.subsets > n_train:
                raise ConfigError(f"{where}: train.subsets={run.config.train.subsets} is more than the {n_train} "
                                  f"training images of data.source '{data.source}' (stage {run.stage})")
            if run.upstream is None and run.transfer_source.endswith(".pt"):
                try:
                    check_architecture(load_checkpoint(Path(run.transfer_source)), Path(run.transfer_source),
                                       run.config)
                except BenchError as e:
                    raise type(e)(f"{where}: transfer_source: {e}") from None
    return sizes
