#!/usr/bin/env bash
# Set up .venv and run the main job: the study's whole workflow at CPU scale on the built-in photos.
# Extra arguments go to `bench run` (e.g. --scale smoke for a one-minute check).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/bench run ablations/paper.yaml "$@"
