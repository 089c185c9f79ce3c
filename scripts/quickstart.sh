#!/usr/bin/env bash
# Set up .venv (if needed) and run the main job: the study's whole workflow at CPU scale on the built-in photos.
# Extra arguments go to `bench run` (e.g. --scale smoke for a one-minute check).
# WORKERS (default: the number of cores, at most 2) `bench run` processes share the study's grid, one torch
# thread each, as the reference results were run: while one worker follows the transfer chain
# (inpainting -> face colorization -> landscapes), the other trains the independent baselines.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/bench ] || bash scripts/setup.sh  # as scripts/test.sh: an existing .venv is used as it is
# The built-in photos come from two Debian packages (`apt-get download`, see README *Data*); a fresh machine's
# apt has no package lists until its first update, as .ci/run does too.
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && [ -z "$(ls /var/lib/apt/lists/ 2>/dev/null | grep -v -e lock -e partial -e auxfiles)" ]; then
    apt-get update -qq || true
fi
started=$(date +%s)
workers=${WORKERS:-$(( $(nproc --all) < 2 ? 1 : 2 ))}  # --all: nproc alone obeys OMP_NUM_THREADS
pids=()
for i in $(seq 2 "$workers"); do
    log=$(mktemp "${TMPDIR:-/tmp}/palette-bench-worker$i.XXXX.log")
    echo "worker $i: log in $log"
    # started at once: workers that create one study together are safe (tests/test_concurrency.py)
    OMP_NUM_THREADS=1 .venv/bin/bench run ablations/paper.yaml --no-report "$@" >"$log" 2>&1 & pids+=($!)
done
status=0
OMP_NUM_THREADS=$(( workers > 1 ? 1 : $(nproc --all) )) .venv/bin/bench run ablations/paper.yaml --no-report "$@" || status=$?
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
[ "$status" -eq 2 ] && exit 2
# Every trial is finished (or failed): this call trains nothing, writes the report, and exits 0 / 1.
status=0
.venv/bin/bench run ablations/paper.yaml "$@" || status=$?
took=$(( $(date +%s) - started ))
[ "$took" -lt 90 ] && took="$took s" || took="$(( (took + 30) / 60 )) min"  # a smoke run is seconds
echo "quickstart: the study took $took with $workers worker(s)"
exit "$status"
