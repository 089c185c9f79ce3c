#!/usr/bin/env python
"""Paper-scale (256 px) training on a CUDA GPU: speed, memory, and what each CUDA default buys.

The 'paper' preset (bench/presets.py): 256 px, base 64, mults [1, 2, 4, 8], attention at 32, batch 8,
T = 2000. Sections of the markdown table it prints (and writes to --out):

1. Training step: the trainer's step (bench/perf/train.train_step: palette_loss, backward, grad clip,
   foreach Adam, EMA) on a fixed batch, for the defaults the core uses on CUDA without any switch (bf16
   autocast, NCHW, SDPA, cudnn.benchmark off) and each of them changed alone; torch.compile last, with
   --compile. Images/s, ms/step, achieved TFLOP/s against the bf16 matmul peak measured in the same run,
   and peak memory (weights, EMA, Adam, activations).
2. The trainer itself (model.trainer.train, synthetic faces at 256 px): images/s of a whole epoch against
   the step alone, i.e. what loading batches and drawing masks and noise cost.
3. Drawing one batch's masks and noise on the host vs on the GPU (why the trainer draws on the device).
4. Sampling: DDIM over 50 steps and the full T-step DDPM chain, images/s.

Without a GPU it says so and exits 0; --cpu-wiring-check runs the same code at the smoke scale on the CPU
(tests this script only).

    python scripts/gpu_check.py [--steps 10] [--warmup 3] [--compile] [--out results/gpu/gpu_check.md]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import math
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _seconds_per_call(fn: Callable[[], object], device: torch.device, warmup: int, calls: int) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    _sync(device)
    return (time.perf_counter() - t0) / calls


@contextlib.contextmanager
def _cudnn_benchmark(on: bool):
    old = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = on
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = old


def bf16_peak(device: torch.device) -> float | None:
    """bf16 matmul TFLOP/s (8192^3 on CUDA), the ceiling the step's achieved rate is compared with."""
    if device.type != "cuda":
        return None
    n = 8192
    a, b = torch.randn(n, n, device=device, dtype=torch.bfloat16), torch.randn(n, n, device=device,
                                                                                 dtype=torch.bfloat16)
    return 2 * n**3 / _seconds_per_call(lambda: a @ b, device, 3, 20) / 1e12


def variants_of(cfg, device: torch.device) -> list[tuple]:
    """(label, config, context (None: the core's autocast), cudnn.benchmark, compiled), the default first."""
    from model.unet import use_channels_last

    cl = use_channels_last(cfg.model.channels_last, device)
    other = cfg.model_copy(update={"model": cfg.model.model_copy(update={"channels_last": not cl})})
    fmt = "channels_last" if cl else "NCHW"
    precision = "bf16 autocast" if device.type == "cuda" else "fp32"
    return [(f"default: {precision}, {fmt} (channels_last 'auto')", cfg, None, False, False),
            ("fp32 (no autocast; cuDNN's TF32 convolutions)", cfg, contextlib.nullcontext, False, False),
            ("NCHW" if cl else "channels_last", other, None, False, False),
            ("cudnn.benchmark on", cfg, None, True, False)]


def step_rows(cfg, device: torch.device, args, peak: float | None, variants: list[tuple]) -> list[dict]:
    """One row per variant, each measured alone (its memory is its own)."""
    from bench.perf.train import step_flops, train_step
    from model.unet import UNet

    torch.manual_seed(0)
    net = UNet(cfg.model, cfg.data.image_size).place(device)
    flops = step_flops(net, cfg, device, net.channels_last)
    del net
    rows = []
    for label, c, ctx, bench_on, compiled in variants:
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
            zero = torch.cuda.memory_allocated(device)
        with _cudnn_benchmark(bench_on):
            torch.manual_seed(0)
            net = UNet(c.model, c.data.image_size).place(device)
            step = train_step(net, c, device, net.channels_last, context=ctx, compiled=compiled)
            t0 = time.perf_counter()
            loss = step()  # the first step: cuDNN autotuning (benchmark on), or compilation
            _sync(device)
            first = time.perf_counter() - t0
            seconds = _seconds_per_call(step, device, args.warmup, args.steps)
            loss = step()
        row = {"variant": label, "img/s": c.train.batch_size / seconds, "ms/step": 1000 * seconds,
               "TFLOP/s": flops / seconds / 1e12, "first step (s)": first, "loss": loss}
        if peak:
            row["of bf16 peak"] = row["TFLOP/s"] / peak
        if device.type == "cuda":
            row["peak memory (GiB)"] = (torch.cuda.max_memory_allocated(device) - zero) / 2**30
        rows.append(row)
        del net, step
    return rows


def relative_to(rows: list[dict], base: dict) -> list[dict]:
    for r in rows:
        r["vs default"] = r["img/s"] / base["img/s"]
    return rows


def trainer_row(scale: str, device: torch.device, images: int) -> dict:
    """model.trainer.train for two epochs on synthetic faces; the second epoch's rate (the first warms up)."""
    from bench.perf.train import preset_config
    from model.trainer import train

    cfg = preset_config(scale, **{"data.source": "synthetic-faces", "data.max_images": images,
                                  "data.synthetic_count": max(images + images // 4, 48), "train.epochs": 2,
                                  "eval.every_epochs": 0, "eval.metrics": ["l1"]})
    with tempfile.TemporaryDirectory() as tmp:
        result = train(cfg, Path(tmp) / "run", device=device)
    last = result.history[-1]
    return {"images": last["subset_size"], "img/s": last["images_per_second"], "loss": last["loss"]}


def draw_rows(cfg, device: torch.device) -> list[dict]:
    """One training batch's masks, noise fill, gamma and eps, drawn with a host and with a device generator."""
    from model.objective import sample_gamma
    from model.schedule import schedule_from_config
    from model.tasks import make_task

    B, S = cfg.train.batch_size, cfg.data.image_size
    y0 = torch.zeros(B, 3, S, S, device=device)
    task, schedule = make_task(cfg.task), schedule_from_config(cfg.diffusion)

    def seconds(g: torch.Generator) -> float:
        def draw():
            cond, mask = task.make(y0, [g] * B)
            gamma = sample_gamma(schedule, B, g).to(device)
            eps = torch.randn(y0.shape, generator=g, device=g.device).to(device)
            return cond, mask, gamma, eps

        return _seconds_per_call(draw, device, 2, 10)

    rows = [{"generator": "host (CPU)", "ms per batch": 1000 * seconds(torch.Generator().manual_seed(0))}]
    if device.type != "cpu":
        rows.append({"generator": f"device ({device.type})",
                     "ms per batch": 1000 * seconds(torch.Generator(device).manual_seed(0))})
    return rows


def sampling_rows(cfg, device: torch.device, ddim_batch: int, ddpm_batch: int) -> list[dict]:
    from model.device import autocast_context
    from model.sample import sample
    from model.samplers import make_sampler
    from model.schedule import schedule_from_config
    from model.tasks import make_task
    from model.unet import UNet

    torch.manual_seed(0)
    net = UNet(cfg.model, cfg.data.image_size).place(device).eval()
    schedule = schedule_from_config(cfg.diffusion)
    S = cfg.data.image_size

    def seconds(sampler, B: int) -> float:
        y0 = torch.zeros(B, 3, S, S, device=device)
        cond, mask = make_task(cfg.task).make(y0, [torch.Generator().manual_seed(i) for i in range(B)])

        def draw(s=sampler):
            gens = [torch.Generator(device).manual_seed(i) for i in range(B)]
            with autocast_context(device):
                return sample(net, cond, mask, y0, s, gens)

        draw(make_sampler("ddim", schedule, 2))  # warm-up at this batch's shapes
        return _seconds_per_call(draw, device, 0, 1)

    rows = []
    for name, sampler, B in (("DDIM, 50 steps", make_sampler("ddim", schedule, 50), ddim_batch),
                             (f"DDPM, all T = {schedule.timesteps} steps", make_sampler("ddpm", schedule), ddpm_batch)):
        sec = seconds(sampler, B)
        rows.append({"sampler": name, "batch": B, "img/s": B / sec, "s per image": sec / B})
    return rows


def _cell(key: str, v) -> str:
    if v == "":
        return ""
    if key == "of bf16 peak":
        return f"{v:.0%}"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1 else (f"{v:,.2f}" if abs(v) < 1000 else f"{v:,.0f}")
    return str(v)


def table(rows: list[dict]) -> str:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(_cell(k, r.get(k, "")) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=10, help="timed steps per variant (default 10)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps after the first (default 3)")
    p.add_argument("--compile", action="store_true", help="end with a torch.compile row (compile time reported)")
    p.add_argument("--trainer-images", type=int, default=64, help="images per trainer epoch (default 64)")
    p.add_argument("--ddpm-batch", type=int, default=None,
                   help="batch of the full-chain DDPM timing (default: the training batch)")
    p.add_argument("--out", type=Path, default=None, help="also write the markdown here")
    p.add_argument("--cpu-wiring-check", action="store_true",
                   help="no GPU needed: run the same code at the smoke scale on the CPU (tests this script only)")
    args = p.parse_args(argv)

    if not torch.cuda.is_available() and not args.cpu_wiring_check:
        print("gpu_check: no CUDA GPU here (torch.cuda.is_available() is False): nothing to measure.")
        return 0

    from bench.perf.train import preset_config
    from model.unet import UNet

    device = torch.device("cpu" if args.cpu_wiring_check else "cuda")
    scale = "smoke" if args.cpu_wiring_check else "paper"
    cfg = preset_config(scale)
    t_start = time.perf_counter()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (wiring check only)"
    cudnn = torch.backends.cudnn.version() if device.type == "cuda" else "-"
    params = UNet(cfg.model, cfg.data.image_size).num_parameters()
    out = [f"# GPU check: {scale} preset on {name}", "",
           f"Command: `python scripts/gpu_check.py{' --compile' if args.compile else ''}`", "",
           f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {cudnn}. Model: {cfg.data.image_size} px, "
           f"base {cfg.model.base_channels}, mults {cfg.model.channel_mults}, attention at "
           f"{cfg.model.attn_resolutions}, {params / 1e6:.1f} M parameters; batch {cfg.train.batch_size}, "
           f"T = {cfg.diffusion.timesteps}.", ""]

    def emit(lines: list[str]) -> None:
        out.extend(lines)
        print("\n".join(lines), flush=True)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text("\n".join(out) + "\n")  # rewritten after each section: a timeout keeps the rest

    emit([])
    peak = bf16_peak(device)
    if peak:
        emit([f"bf16 matmul peak measured in this run (8192^3): **{peak:.0f} TFLOP/s**.", ""])
    rows = step_rows(cfg, device, args, peak, variants_of(cfg, device))
    relative_to(rows, rows[0])
    emit(["## Training step (fixed batch; wall clock, synchronised)", "", table(rows), "",
          f"Timed over {args.steps} steps after {args.warmup} warm-up steps; 'first step' is the very first call "
          "(cuDNN autotuning with cudnn.benchmark on, or compilation). FLOPs counted with "
          "torch.utils.flop_counter on one forward + backward.", ""])
    ok = all(math.isfinite(r["loss"]) for r in rows)

    tr = trainer_row(scale, device, args.trainer_images)
    share = 1 - tr["img/s"] / rows[0]["img/s"]
    emit(["## The trainer (model.trainer.train, synthetic faces, second epoch)", "",
          table([{"images per epoch": tr["images"], "img/s": tr["img/s"], "step alone img/s": rows[0]["img/s"],
                  "time outside the step": f"{share:.0%}"}]), "",
          "Outside the step: moving each uint8 batch to the device, its masks, noise and gamma, and the "
          "per-step loss read-back (.item()).", ""])
    ok = ok and math.isfinite(tr["loss"])

    emit(["## Drawing one batch's masks and noise", "", table(draw_rows(cfg, device)), ""])
    emit(["## Sampling (bf16 autocast, random weights: the cost, not the quality)", "",
          table(sampling_rows(cfg, device, cfg.eval.batch_size, args.ddpm_batch or cfg.train.batch_size)), ""])
    if args.compile:  # last: compilation takes minutes, and everything above is already written
        compiled = step_rows(cfg, device, args, peak, [("torch.compile (inductor), otherwise default", cfg, None,
                                                        False, True)])
        emit(["## torch.compile", "", table(relative_to(compiled, rows[0])), "",
              "'first step' includes the compilation; 'vs default' is against the default row above.", ""])
        ok = ok and math.isfinite(compiled[0]["loss"])
    emit([f"Took {time.perf_counter() - t_start:.0f} s."])
    if not ok:
        print("gpu_check: a loss is not finite", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
