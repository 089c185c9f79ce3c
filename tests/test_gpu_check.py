"""scripts/gpu_check.py, the GPU check, runs its whole code path at the smoke scale on the CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_gpu_check_wiring_on_the_cpu_writes_every_section(tmp_path):
    out = tmp_path / "gpu_check.md"
    proc = _run("--cpu-wiring-check", "--steps", "1", "--warmup", "0", "--trainer-images", "16", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = out.read_text()
    for section in ("## Training step", "## The trainer", "## Drawing one batch", "## Sampling"):
        assert section in text
    assert "| default: fp32, channels_last (channels_last 'auto') |" in text  # the CPU's resolved format
    assert "| NCHW |" in text and "| cudnn.benchmark on |" in text and "DDPM, all T = 100 steps" in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_gpu_check_without_a_gpu_says_so_and_succeeds():
    proc = _run()
    assert proc.returncode == 0 and "no CUDA GPU here" in proc.stdout
