"""Checks that need more than the study file (data sizes, transfer checkpoints, a writable results folder),
run before anything is written, so bad input fails in one line with nothing half-done."""

from __future__ import annotations

import os
from pathlib import Path

from model.checkpoint import load_checkpoint
from model.data import load_split
from model.errors import BenchError, ConfigError, DataError
from model.trainer import check_architecture

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


def preflight(study: Study, results_root: Path) -> dict:
    """Validate what only the data can tell; returns {data source: (train, test) sizes} for the record."""
    where = str(study.path)
    if study.name in RESERVED:
        raise ConfigError(f"{where}: name {study.name!r} is reserved for committed results; choose another")
    check_results_root(results_root)
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
                sizes[f"{data.source}:{data.path or 'built-in'}@{data.image_size}"] = (n_train, n_test)
            n_train = sizes[f"{data.source}:{data.path or 'built-in'}@{data.image_size}"][0]
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
