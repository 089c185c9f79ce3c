"""The benchmark suite: `tox -e bench`, i.e. `pytest tests/benchmarks --benchmark-only` (the default test run
ignores this folder). Its files are named bench_*.py, which pytest does not collect by default: this hook
collects them when the folder is asked for.

Every comparison here is a ratio of contenders timed in the same alternated rounds (bench/perf/timing.py:
CPU time of the single compute thread), never an absolute number; `bench perf` writes the full table.
"""

from __future__ import annotations

import pytest


def pytest_collect_file(file_path, parent):
    # a file named on the command line is collected by pytest itself, whatever its name
    if file_path.suffix == ".py" and file_path.name.startswith("bench_") and not parent.session.isinitpath(file_path):
        return pytest.Module.from_parent(parent, path=file_path)
    return None
