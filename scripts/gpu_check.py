#!/usr/bin/env python
"""A few paper-scale training steps on a GPU: how fast, and how much memory.

The 'paper' preset (bench/presets.py): 256 px, base 64, mults [1, 2, 4, 8], attention at 32 and 16,
batch 8. The step is the trainer's (bench/perf_train.py: palette_loss, backward, grad clip, Adam, EMA)
with what the core does on CUDA without any switch: bf16 autocast (model/device.py), channels_last
(UNetConfig), SDPA attention (flash / memory-efficient kernels), foreach Adam. Prints images/s, seconds
per step and torch.cuda.max_memory_allocated. Without a GPU it says so and exits 0.

    .venv/bin/python scripts/gpu_check.py [--steps 10] [--warmup 3] [--batch 8] [--compile]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=10, help="timed steps (default 10)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (cuDNN autotuning, allocator)")
    p.add_argument("--batch", type=int, default=None, help="batch size (default: the paper preset's, 8)")
    p.add_argument("--compile", action="store_true", help="torch.compile the network (compile time reported)")
    p.add_argument("--cpu-wiring-check", action="store_true",
                   help="no GPU needed: run the same code at the smoke scale on the CPU (tests this script only)")
    args = p.parse_args(argv)

    import torch

    if not torch.cuda.is_available() and not args.cpu_wiring_check:
        print("gpu_check: no CUDA GPU here (torch.cuda.is_available() is False): nothing to measure.")
        return 0

    from bench.perf_train import preset_config, train_step
    from model.device import autocast_context
    from model.unet import UNet

    device = torch.device("cpu" if args.cpu_wiring_check else "cuda")
    cuda = device.type == "cuda"
    overrides = {} if args.batch is None else {"train.batch_size": args.batch}
    cfg = preset_config("smoke" if args.cpu_wiring_check else "paper", **overrides)
    torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest convolutions
    torch.manual_seed(0)
    net = UNet(cfg.model, cfg.data.image_size).to(device)
    step = train_step(net, cfg, device, cfg.model.channels_last, compiled=args.compile)
    ctx = autocast_context(device)
    precision = f"{ctx.fast_dtype} autocast" if isinstance(ctx, torch.autocast) else "fp32"

    t0 = time.perf_counter()
    for _ in range(max(1, args.warmup)):
        loss = step()
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    sync()
    warmup_s = time.perf_counter() - t0
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        loss = step()  # .item() inside: one sync per step, as in the trainer
    sync()
    seconds = (time.perf_counter() - t0) / args.steps

    B = cfg.train.batch_size
    name = torch.cuda.get_device_name(device) if cuda else "CPU (wiring check only)"
    print(f"device: {name}, torch {torch.__version__}, {precision}, "
          f"channels_last={cfg.model.channels_last}, compile={args.compile}")
    preset = "smoke" if args.cpu_wiring_check else "paper"
    print(f"model: {preset} preset, {cfg.data.image_size} px, {net.num_parameters() / 1e6:.1f} M parameters, "
          f"batch {B}")
    print(f"warm-up: {args.warmup} steps in {warmup_s:.1f} s")
    print(f"training: {B / seconds:.1f} img/s, {1000 * seconds:.1f} ms/step over {args.steps} steps, "
          f"last loss {loss:.4f}")
    if cuda:
        print(f"torch.cuda.max_memory_allocated: {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB")
    if not math.isfinite(loss):
        print("gpu_check: the loss is not finite", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
