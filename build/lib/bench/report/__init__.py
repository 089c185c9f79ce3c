"""The report: a study folder's records -> report.md with its tables, figures, findings and verdicts.

One responsibility per file: `tables.py` (per-config aggregates), `figures.py` (PNG figures), `findings.py`
(computed sentences), `gate.py` (the learned gate against trivial baselines), `build.py` (report.md / HTML).
The flow of the harness: study file (study.py) -> runner (runner.py) -> records (records.py) -> report (here).
"""



def __getattr__(name: str):
    """`write_report`, `md_to_html` from build.py on first use: importing the package for its light modules
    (gate, stats, cost: what records.py and the runner need) must not load matplotlib and seaborn (~1 s)."""
    if name in ("write_report", "md_to_html"):
        from . import build

        return getattr(build, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
