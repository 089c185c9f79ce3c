#!/usr/bin/env bash
# Set up a virtual environment in .venv with the project and its test tools.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# constraints.txt pins torch==2.14.1 / torchvision==0.29.1 (on local disk here); pyproject keeps a range.
.venv/bin/python -m pip install -q -c constraints.txt -e '.[dev]'
