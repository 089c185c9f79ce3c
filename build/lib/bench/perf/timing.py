"""Timing on a shared machine (`bench perf`): contenders alternated round by round, the machine's fp32
matmul peak, FLOP counts, and a description of the machine.

Why CPU time: on a 2-core machine shared with other jobs, wall-clock time mostly measures how often the
scheduler took the core away. With one torch thread every kernel runs on the calling thread, so that
thread's CPU time (`time.thread_time`) is the work itself, and it is what we compare. With more threads
(OpenMP workers spin while they wait) and on CUDA (asynchronous), only wall-clock time means anything,
and it is used there. Every figure is the median over rounds; all contenders of one comparison run in the
same rounds, one after the other, so a slow period of the machine hits all of them.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch.utils import flop_counter


@dataclass
class Timing:
    """One contender's per-round times (seconds per call) and how many items (images) a call makes."""

    name: str
    items: int
    cpu: list[float] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)
    use_cpu_time: bool = True

    @property
    def seconds(self) -> float:
        """Median seconds per call, by the clock that means something here (see the module docstring)."""
        return statistics.median(self.cpu if self.use_cpu_time else self.wall)

    @property
    def wall_seconds(self) -> float:
        return statistics.median(self.wall)

    @property
    def per_second(self) -> float:
        return self.items / self.seconds

    @property
    def spread(self) -> float:
        """(max - min) / median over rounds: how noisy this contender's rounds were."""
        xs = self.cpu if self.use_cpu_time else self.wall
        return (max(xs) - min(xs)) / statistics.median(xs)


def round_ratios(base: Timing, other: Timing) -> list[float]:
    """base's seconds / other's in each round (`alternate` times them in the same rounds): how much faster other
    was, round by round. Their spread says whether a median ratio is more than this machine's noise."""
    a, b = (base.cpu, other.cpu) if base.use_cpu_time else (base.wall, other.wall)
    return [x / y for x, y in zip(a, b, strict=True)]


def cpu_time_is_valid(device: torch.device) -> bool:
    return device.type == "cpu" and torch.get_num_threads() == 1


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def alternate(contenders: dict[str, tuple[Callable[[], object], int]], rounds: int, device: torch.device,
              warmup: int = 1, calls: int = 1) -> dict[str, Timing]:
    """Time each contender (fn, items per call) `calls` times per round, in the same rounds, alternating."""
    use_cpu = cpu_time_is_valid(device)
    out = {name: Timing(name, items, use_cpu_time=use_cpu) for name, (_, items) in contenders.items()}
    for _ in range(warmup):
        for fn, _ in contenders.values():
            fn()
    synchronize(device)
    for r in range(rounds):
        order = list(contenders.items())
        if r % 2:  # A B C, C B A, ...: neither goes first every time (cache and frequency effects)
            order.reverse()
        for name, (fn, _) in order:
            c0, w0 = time.thread_time(), time.perf_counter()
            for _ in range(calls):
                fn()
            synchronize(device)
            out[name].wall.append((time.perf_counter() - w0) / calls)
            out[name].cpu.append((time.thread_time() - c0) / calls)
    return out


def matmul_peak(device: torch.device, n: int = 2048, rounds: int = 5) -> float:
    """fp32 GEMM GFLOP/s (n x n x n sgemm, MKL / cuBLAS), median of `rounds`, timed like everything else."""
    if device.type == "cuda":
        n = max(n, 8192)
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    c = torch.empty(n, n, device=device)
    reps = max(1, int(2e9 // (2 * n**3))) if device.type == "cpu" else 20
    with _no_tf32(device):
        t = alternate({"sgemm": (lambda: [torch.mm(a, b, out=c) for _ in range(reps)], reps)}, rounds, device)
    return 2 * n**3 * reps / t["sgemm"].seconds / 1e9


def conv_peak(device: torch.device, channels: int = 512, rounds: int = 5) -> float:
    """fp32 GFLOP/s of a large 3x3 convolution (oneDNN / cuDNN, channels_last): on some CPUs (AMD with MKL)
    it runs faster than the sgemm, so it is the better estimate of what the FMA units can do."""
    conv = torch.nn.Conv2d(channels, channels, 3, padding=1, bias=False).to(device, memory_format=torch.channels_last)
    x = torch.randn(8, channels, 32, 32, device=device).contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), _no_tf32(device):
        t = alternate({"conv": (lambda: conv(x), 1)}, rounds, device)
    return 2 * 8 * 32 * 32 * channels * channels * 9 / t["conv"].seconds / 1e9


class _no_tf32:
    """The fp32 peak is an fp32 peak: no TF32 tensor cores on CUDA while it is measured."""

    def __init__(self, device):
        self.cuda = device.type == "cuda"

    def __enter__(self):
        if self.cuda:
            self.old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False

    def __exit__(self, *exc):
        if self.cuda:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = self.old


def _register_cpu_sdpa_flops() -> None:
    """FlopCounterMode counts the CUDA attention kernels but not the CPU flash kernel that
    F.scaled_dot_product_attention runs here: give it the same formulas (QK^T and PV; backward 5 matmuls)."""
    aten = torch.ops.aten
    fwd = aten._scaled_dot_product_flash_attention_for_cpu
    bwd = aten._scaled_dot_product_flash_attention_for_cpu_backward
    registry = flop_counter.flop_registry
    if fwd not in registry and fwd.default not in registry:
        flop_counter.register_flop_formula(fwd, get_raw=True)(flop_counter.sdpa_flop)  # already shape-wrapped
    if bwd not in registry and bwd.default not in registry:
        flop_counter.register_flop_formula(bwd, get_raw=True)(flop_counter.sdpa_backward_flop)


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs (multiply-add = 2) of the matmuls, convolutions and attention that fn runs."""
    _register_cpu_sdpa_flops()
    with flop_counter.FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((ln.split(":", 1)[1].split() for ln in f if ln.startswith("flags")), [])
    except OSError:
        flags = []
    keep = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")
    return " ".join(f for f in keep if f in flags)


def machine(device: torch.device) -> dict:
    info = {"cpu": cpu_model(), "cpu_flags": cpu_flags(), "logical_cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "device": str(device),
            "clock": "thread CPU time" if cpu_time_is_valid(device) else "wall clock",
            "load_average_1m": round(os.getloadavg()[0], 2)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    try:
        import diffusers

        info["diffusers"] = diffusers.__version__
    except ImportError:
        info["diffusers"] = None
    return info
