"""The share of a study's wall time spent training (`bench perf`): a shipped study run at smoke scale, in this
process, from the call to its written report, against the training seconds its runs record.

Training seconds are the trainer's own (history.json `train_seconds`: the optimizer steps, evaluation
excluded), summed over the study's runs; the wall time is that of `bench run` without the interpreter's start:
loading and preflight, datasets, evaluation and sampling, checkpoints, the Optuna storage, records and the
report all count against it. At smoke scale the networks are tiny and evaluation relatively large, so the share
is far below a cpu-scale study's; the table shows where the rest goes.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

STUDY_FILE = Path(__file__).resolve().parents[2] / "ablations" / "subsets.yaml"
OVERRIDES = {"data.source": "synthetic-faces"}  # no photo download; the same sizes at smoke scale


def training_share(device: str, study_file: Path = STUDY_FILE, scale: str = "smoke") -> dict:
    """Run `study_file` at `scale` in a temporary folder; return wall and training seconds and their ratio."""
    from .. import runner
    from ..preflight import preflight
    from ..report import write_report
    from ..study import load_study

    with tempfile.TemporaryDirectory(prefix="perf-study-") as tmp:
        results = Path(tmp) / "results"
        started = time.perf_counter()
        study = load_study(study_file, scale, OVERRIDES)
        preflight(study, results)
        summary = runner.run_study(study, results, f"sqlite:///{results}/bench.db", device=device)
        write_report(results / study.name, formats=("md", "csv"))
        wall = time.perf_counter() - started
        runs = sorted((results / study.name / "runs").glob("*/history.json"))
        train = sum(json.loads(p.read_text())[-1]["train_seconds"] for p in runs)
    return {"study": f"{study_file.name} --scale {scale} --set data.source=synthetic-faces",
            "trials": len(study.trials), "failed": summary.failed, "runs": len(runs),
            "wall_seconds": wall, "train_seconds": train, "share": train / wall}
