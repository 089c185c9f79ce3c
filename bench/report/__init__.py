"""The report: a study folder's records -> report.md with its tables, figures, findings and verdicts.

One responsibility per file: `tables.py` (per-config aggregates), `figures.py` (PNG figures), `findings.py`
(computed sentences), `gate.py` (the learned gate against trivial baselines), `build.py` (report.md / HTML).
The flow of the harness: study file (study.py) -> runner (runner.py) -> records (records.py) -> report (here).
"""

from .build import md_to_html, write_report  # noqa: F401
