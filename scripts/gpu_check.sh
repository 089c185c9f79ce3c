#!/usr/bin/env bash
# Everything that needs a CUDA GPU, in one go (a few minutes on one H100):
#   1. tests/test_cuda.py: training sessions on the GPU resumed on the GPU and on the CPU, seeded sampling,
#      the loss's random draws, Inception features against the CPU's;
#   2. ablations/paper.yaml at smoke scale on the GPU (synthetic data), and at paper scale (256 px, the
#      63 M-parameter UNet) shortened to 2 epochs of 32 images and 16 evaluation samples per trial: the whole
#      harness on CUDA, evaluation and report included;
#   3. scripts/gpu_check.py: paper-scale training-step speed and memory, each CUDA default ablated.
# Logs and tables go to OUT (default results/gpu); study folders to OUT/studies. Exit status 1 if any part
# failed. Python: $PYTHON, else .venv/bin/python (scripts/setup.sh), else python3.
#
#   bash scripts/gpu_check.sh [OUT]
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-results/gpu}
if [ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; fi  # scripts/setup.sh's
PY=${PYTHON:-python3}
STUDIES=${STUDIES:-$OUT/studies}
mkdir -p "$OUT" "$STUDIES"
export PYTHONUNBUFFERED=1
status=0

part() {  # part NAME COMMAND...: run, log to OUT/NAME.log, show the end of the log
    local name=$1 start rc
    shift
    echo "== $name: $*"
    start=$(date +%s)
    "$@" >"$OUT/$name.log" 2>&1
    rc=$?
    echo "== $name: exit $rc after $(($(date +%s) - start)) s"
    tail -n "${TAIL:-15}" "$OUT/$name.log"
    [ "$rc" -eq 0 ] || status=1
}

"$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" \
    || { echo "gpu_check.sh: torch sees no CUDA GPU here"; exit 1; }
"$PY" -c "import torch; print(torch.cuda.get_device_name())"

part cuda_tests "$PY" -m pytest -q -m cuda tests/test_cuda.py -p no:cacheprovider -rA -s

SYNTHETIC=(--set face_inpaint.data.source=synthetic-faces --set face_color.data.source=synthetic-faces
           --set land_color.data.source=synthetic-landscapes --set data.path=null)
part smoke_study "$PY" -m bench run ablations/paper.yaml --scale smoke --device cuda \
    --results "$STUDIES/smoke" "${SYNTHETIC[@]}"
part paper_study "$PY" -m bench run ablations/paper.yaml --scale paper --device cuda \
    --results "$STUDIES/paper" "${SYNTHETIC[@]}" --set train.epochs=2 --set data.max_images=32 \
    --set eval.n_samples=16 --set eval.steps=10 --set eval.batch_size=16 --set eval.every_epochs=0

part gpu_check "$PY" scripts/gpu_check.py --out "$OUT/gpu_check.md" ${GPU_CHECK_ARGS:-}
exit $status
