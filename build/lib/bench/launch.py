"""One run on K local processes (train.processes = K): K children `python -m bench train`, each with the
environment torchrun gives its workers (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT).

Why children of our own rather than torchrun in a subprocess or torch.multiprocessing.spawn: the ranks run
exactly the code that `torchrun --nproc_per_node=K -m bench train` runs (env://), with no agent process and no
pickled callables between them and us; each child is killed by the kernel when this process dies
(PR_SET_PDEATHSIG), so a SIGKILLed `bench run` never leaves ranks training into a folder that its next call
resumes; and the first rank that fails ends the others at once. Several machines: use torchrun itself.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from model.checkpoint import latest_checkpoint, load_checkpoint
from model.config import RunConfig
from model.trainer import Budget, TrainResult, build_network


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


try:  # looked up here, not between fork and exec, where a lock held by another thread could deadlock
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux: children outlive a killed parent until their next collective
    _prctl = None


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGKILL it when its parent dies."""
    if _prctl is not None:
        _prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


def budget_arg(budget: Budget | None) -> list[str]:
    if budget is None or (budget.minutes is None and budget.epochs is None):
        return []
    return ["--session-budget", f"{budget.epochs}ep" if budget.epochs is not None else f"{budget.minutes}m"]


def run_ranks(cfg: RunConfig, run_dir: Path, device: str, init_from: Path | None, budget: Budget | None,
              evaluate: bool, quiet: bool = False) -> int:
    """Train `cfg` in `run_dir` on cfg.train.processes local processes; -> 0, or the first failed rank's status.
    Rank 0's standard output (progress bar, result line) is shown unless `quiet`; every rank's errors are."""
    k = cfg.train.processes
    with tempfile.TemporaryDirectory(prefix="palette-ranks-") as tmp:
        config_file = Path(tmp) / "config.json"  # every key resolved: no preset or default changes it
        config_file.write_text(cfg.model_dump_json())
        args = [sys.executable, "-m", "bench", "train", str(config_file), "--run-dir", str(run_dir),
                "--device", str(device), *budget_arg(budget)]
        args += ["--init-from", str(init_from)] if init_from is not None else []
        args += ["--evaluate"] if evaluate else []
        env = {**os.environ, "WORLD_SIZE": str(k), "LOCAL_WORLD_SIZE": str(k), "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": str(_free_port())}
        procs = [subprocess.Popen(args, env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
                                  stdout=None if r == 0 and not quiet else subprocess.DEVNULL,
                                  preexec_fn=_die_with_parent)
                 for r in range(k)]
        try:
            while True:
                codes = [p.poll() for p in procs]
                failed = [c for c in codes if c not in (None, 0)]
                if failed:
                    return failed[0]
                if all(c == 0 for c in codes):
                    return 0
                time.sleep(0.1)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                p.wait()


def train_processes(cfg: RunConfig, run_dir: Path, device: str, init_from: Path | None = None,
                    budget: Budget | None = None, evaluate: bool = True) -> TrainResult:
    """`model.trainer.train` on K processes; the result is read back from rank 0's newest checkpoint."""
    code = run_ranks(cfg, run_dir, device, init_from, budget, evaluate, quiet=True)  # bench run has its own bar
    if code != 0:
        raise RuntimeError(f"{run_dir}: a rank of {cfg.train.processes} exited with status {code} "
                           "(its error is in the log above)")
    num_parameters = build_network(cfg).num_parameters()
    path = latest_checkpoint(Path(run_dir) / "checkpoints")
    if path is None:  # a session budget spent before the first checkpoint
        return TrainResult(status="paused", history=[], num_parameters=num_parameters, checkpoint=None)
    ckpt = load_checkpoint(path)
    done = ckpt["progress"]["epoch"] >= cfg.train.total_epochs and ckpt["progress"]["pending_eval"] is None
    return TrainResult(status="done" if done else "paused", history=list(ckpt["history"]),
                       num_parameters=num_parameters, checkpoint=path)
