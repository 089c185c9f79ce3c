"""Data pipeline throughput and training memory (`bench perf`).

Data: the trainer's per-batch work before the network, on the real uint8 cache of a synthetic source:
index the uint8 NHWC cache, ``images_to_tensor`` (float NCHW in [-1, 1]), channels_last, ``task.make``
(mask and condition). The trainer runs it in the step's thread, so its time adds to the step: the table
gives its images/s and its share of a step.
Memory: one training epoch (model.trainer.train) with N = 1 and N = 8 subsets, each in a fresh Python
process that reports its own peak resident set size (VmHWM), before training and at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from model.config import RunConfig
from model.data import load_split
from model.tasks import make_task
from model.trainer import images_to_tensor
from model.unet import use_channels_last

from .timing import Timing, alternate

TASKS = {"inpainting (paper masks)": {"task.name": "inpainting", "task.mask": "paper"},
         "inpainting (free-form masks)": {"task.name": "inpainting", "task.mask": "free_form"},
         "colorization": {"task.name": "colorization"},
         "uncropping (random side)": {"task.name": "uncropping", "task.uncrop": "random"}}


def data_config(cache_dir: Path, count: int, **dotted) -> RunConfig:
    from .train import preset_config

    return preset_config("cpu", **{"data.source": "synthetic-faces", "data.synthetic_count": count,
                                   "data.cache_dir": str(cache_dir), **dotted})


def pipeline(cache_dir: Path, count: int, device: torch.device, rounds: int, tasks: list[str]) -> dict[str, Timing]:
    """Images/s of cache -> float batch -> channels_last -> task.make, one contender per task."""
    contenders = {}
    for label in tasks:
        cfg = data_config(cache_dir, count, **TASKS[label])
        images = torch.from_numpy(load_split(cfg.data, "train").images)  # decoded once, then the cache
        task, B = make_task(cfg.task), cfg.train.batch_size
        generator = torch.Generator().manual_seed(0)
        order = torch.randperm(len(images), generator=generator)
        batches = [order[i:i + B] for i in range(0, len(order) - B + 1, B)]
        channels_last = use_channels_last(cfg.model.channels_last, device)

        def epoch(images=images, task=task, batches=batches, generator=generator, cl=channels_last):
            for idx in batches:
                y0 = images_to_tensor(images[idx], device)
                if cl:
                    y0 = y0.contiguous(memory_format=torch.channels_last)
                task.make(y0, [generator] * len(y0))

        contenders[label] = (epoch, len(batches) * B)
    return alternate(contenders, rounds, device)


_CHILD = r"""
import json, sys, time
import torch
torch.set_num_threads(int(sys.argv[4]))
from bench.perf.data import data_config, peak_rss_mib
from model.trainer import Budget, train
cfg = data_config(sys.argv[1], int(sys.argv[2]), **{"train.subsets": int(sys.argv[3])})
before = peak_rss_mib()
t0 = time.perf_counter()
result = train(cfg, sys.argv[5], device="cpu", budget=Budget(epochs=1))
record = result.history[-1]
print(json.dumps({"rss_before_mib": before, "rss_peak_mib": peak_rss_mib(), "seconds": time.perf_counter() - t0,
                  "images": record["subset_size"], "steps": record["steps"]}))
"""


def peak_rss_mib() -> float:
    """This process's peak resident set size. VmHWM (Linux) belongs to the address space, so it starts
    afresh at exec; ru_maxrss would also carry the parent's peak into a child started from a big parent."""
    try:
        with open("/proc/self/status") as f:
            return next(int(ln.split()[1]) for ln in f if ln.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def epoch_memory(cache_dir: Path, count: int, subsets: list[int], timeout: float = 600.0) -> dict[int, dict]:
    """Peak RSS of one training epoch per N, each in its own process."""
    load_split(data_config(cache_dir, count).data, "train")  # decode the cache here, not in the children
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    out = {}
    for n in subsets:
        with tempfile.TemporaryDirectory(prefix="perf-mem-") as run_dir:
            args = [sys.executable, "-c", _CHILD, str(cache_dir), str(count), str(n), str(torch.get_num_threads()),
                    run_dir]
            proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env, cwd=root)
        if proc.returncode != 0:
            raise RuntimeError(f"memory run N={n} failed: {proc.stderr.strip().splitlines()[-1:]}")
        out[n] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out
