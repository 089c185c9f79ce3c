"""`bench perf`: how fast the core runs here, against peers and against the machine's own limits.

run.py        the command: sections, targets table, perf.md / perf.csv / perf.json
timing.py     alternated rounds, CPU time of the compute thread, the fp32 matmul peak, the machine
train.py      the training step: ours against diffusers' UNet2DModel (a peer: `pip install -e '.[peers]'`)
evaluation.py sampling (DDPM, DDIM) and FID features against pytorch-fid's own path
data.py       the data pipeline and a training epoch's peak memory
study.py      the share of a smoke study's wall time spent training
"""

from .run import run_perf

__all__ = ["run_perf"]
