"""Helpers shared by the reliability tests (kill anywhere, bad input, untrusted files, concurrency, faults).

Studies here are tiny (16 px, 8 base channels, 2 epochs of 2 steps, L1 only): a whole trial takes about a
second, so what is measured is the harness, not the network.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import torch
import yaml

from model import faults
from model.checkpoint import latest_checkpoint, load_checkpoint

REPO = Path(__file__).resolve().parents[1]

# Columns and metrics that measure time: they legitimately differ between two runs of the same study.
TIMING = {"epoch_seconds", "images_per_second", "train_hours", "time_per_epoch_min", "total_hours", "chain_hours",
          "sample_seconds_per_image", "ddpm_seconds_per_image", "speedup", "speedup_per_epoch",
          # process CPU time, the machine's load and what follows from them (issue 22)
          "epoch_cpu_seconds", "train_cpu_hours", "eval_seconds", "eval_cpu_seconds", "cpu_hours", "cpu_per_epoch_min",
          "wall_per_cpu", "contended", "load_start", "load_end", "workers_start", "workers_end", "trial_seconds",
          "trial_cpu_seconds", "to_baseline_hours", "to_baseline_cpu_hours", "to_trivial_hours",
          "to_trivial_cpu_hours"}

TINY_BASE = {
    "data": {"source": "synthetic-faces", "synthetic_count": 32, "max_images": 16},
    "model": {"base_channels": 8, "norm_groups": 4, "head_channels": 8, "attn_resolutions": []},
    "diffusion": {"timesteps": 50},
    "train": {"epochs": 2, "batch_size": 8, "checkpoint_every_steps": 1},
    "eval": {"metrics": ["l1"], "n_samples": 4, "steps": 2, "batch_size": 4, "save_images": 2, "every_epochs": 1},
}


# Three points over two stages: the inpainting run is trained for point 1 and, as upstream, for point 3.
TWO_STAGES = {"inpaint": {"task.name": "inpainting"},
              "color": {"task.name": "colorization", "transfer_source": "inpaint"}}
TWO_STAGE_SWEEP = {"zip": {"stage": ["inpaint", "color", "color"],
                           "transfer_source": ["scratch", "scratch", "inpaint"]}}


def tiny_study(path: Path, name: str = "tiny", **keys) -> Path:
    """Write a tiny study file (`keys` replace top-level keys: sweep, stages, seeds, baseline, base...)."""
    spec = {"name": name, "quality_metric": "l1", "base": TINY_BASE,
            "sweep": {"grid": {"eval.steps": [2, 3]}}, "seeds": [0], **keys}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def run_args(study_file: Path, results: Path, *extra: str) -> list[str]:
    return ["run", str(study_file), "--scale", "smoke", "--results", str(results), "--no-report", *extra]


def fork_bench(args: list[str], fault: str | None = None, log: Path | None = None) -> int:
    """Start `bench <args>` in a forked child (no interpreter start-up: torch is already imported); its pid.
    `fault` sets PALETTE_BENCH_FAULT in the child; its output goes to `log`."""
    pid = os.fork()
    if pid:
        return pid
    code = 99  # the child: never returns into pytest
    try:
        faults._reached.clear()
        if fault:
            os.environ[faults.ENV] = fault
        else:
            os.environ.pop(faults.ENV, None)
        if log is not None:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            # pytest's capture replaced sys.stdout/err with its own files: write to the log instead
            sys.stdout = open(1, "w", buffering=1, closefd=False)
            sys.stderr = open(2, "w", buffering=1, closefd=False)
        from bench import cli

        code = cli.main(args)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code if isinstance(code, int) else 1)


def wait_bench(pid: int, kill_after: float | None = None, timeout: float = 300) -> int:
    """The child's exit code (negative: killed by that signal); SIGKILL it after `kill_after` seconds.
    A child still running after `timeout` seconds is killed and the test fails (a hang, never a pass)."""
    start = time.monotonic()
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        elapsed = time.monotonic() - start
        if kill_after is not None and elapsed >= kill_after:
            os.kill(pid, signal.SIGKILL)
            kill_after = None
        elif elapsed >= timeout:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise TimeoutError(f"bench child {pid} still running after {timeout:.0f} s")
        time.sleep(0.02)


def forked_bench(args: list[str], fault: str | None = None, log: Path | None = None,
                 kill_after: float | None = None) -> int:
    """`bench <args>` in a forked child, waited for: its exit code (-9 when SIGKILLed)."""
    return wait_bench(fork_bench(args, fault, log), kill_after)


def subprocess_env(**extra: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", **extra}
    env.pop(faults.ENV, None)
    return env


def bench_cmd(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "bench", *args]


def run_subprocess(args: list[str], timeout: float = 120, **env) -> subprocess.CompletedProcess:
    return subprocess.run(bench_cmd(args), cwd=REPO, env=subprocess_env(**env), capture_output=True, text=True,
                          timeout=timeout)


def comparable_records(study_dir: Path) -> pd.DataFrame:
    """records.csv without timing rows and columns, in file order."""
    df = pd.read_csv(Path(study_dir) / "records.csv")
    df = df[~df["metric"].isin(TIMING)]
    return df.drop(columns=[c for c in df.columns if c in TIMING]).reset_index(drop=True)


def comparable_trials(study_dir: Path) -> pd.DataFrame:
    """trials.csv without timing columns and Optuna trial numbers (a resumed trial gets a new number)."""
    df = pd.read_csv(Path(study_dir) / "trials.csv")
    drop = [c for c in df.columns if c in TIMING or c == "optuna_trial"]
    return df.drop(columns=drop).reset_index(drop=True)


def run_dirs(study_dir: Path) -> list[Path]:
    return sorted(p for p in (Path(study_dir) / "runs").iterdir() if p.is_dir())


def final_weights(run_dir: Path) -> dict:
    ckpt = load_checkpoint(latest_checkpoint(Path(run_dir) / "checkpoints"))
    return {"net": ckpt["net"], "ema": ckpt["ema"]}


def assert_same_weights(a: dict, b: dict, where: str = "") -> None:
    for part in ("net", "ema"):
        assert a[part].keys() == b[part].keys(), f"{where} {part}: other parameters"
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), f"{where} {part}.{k} differs"


def optuna_trials(storage, study_name: str) -> list[optuna.trial.FrozenTrial]:
    """Every Optuna trial of a bench study: those of its per-stage studies `<study_name>/<stage>`."""
    from bench.runner import make_storage

    store = make_storage(storage) if isinstance(storage, str) else storage
    names = [s.study_name for s in optuna.get_all_study_summaries(store) if s.study_name.startswith(study_name + "/")]
    assert names, f"no Optuna study {study_name}/<stage>"
    return [t for name in names for t in optuna.load_study(study_name=name, storage=store).get_trials(deepcopy=False)]


def assert_exactly_once(trials: list[optuna.trial.FrozenTrial], keys: set[str]) -> None:
    """One COMPLETE Optuna trial per study trial; every other one FAIL with reason 'interrupted'."""
    complete = [t.user_attrs["key"] for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert sorted(complete) == sorted(keys), "not exactly one COMPLETE Optuna trial per point x seed"
    for t in trials:
        if t.state != optuna.trial.TrialState.COMPLETE:
            assert t.state == optuna.trial.TrialState.FAIL, (t.number, t.state)
            assert t.user_attrs.get("fail_reason", "").startswith("interrupted"), t.user_attrs


def leftovers(root: Path) -> list[Path]:
    """Temporary files of interrupted writes and set-aside checkpoints anywhere under root."""
    return sorted(p for p in Path(root).rglob("*") if ".tmp-" in p.name or p.name.endswith(".bad"))
