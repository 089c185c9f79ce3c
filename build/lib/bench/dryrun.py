"""`bench run --dry-run`: the expanded grid and its estimated cost, measured, not guessed.

The cost of each distinct network is measured with a few real training steps and sampling steps on this
machine; the estimate multiplies them by the images each run will see and the samples it will draw (both
counted in bench/cost.py).
Stage runs shared by several trials are counted once.
"""

from __future__ import annotations

import time

import torch

from model.config import RunConfig
from model.device import resolve_device
from model.objective import palette_loss
from model.schedule import schedule_from_config
from model.unet import UNet

from .cost import run_work, size_key
from .progress import console, print_table
from .study import Study


def _seconds_per_image(cfg: RunConfig, device, repeats: int = 2) -> tuple[float, float]:
    """(training seconds per image, network-evaluation seconds per image) for this config."""
    torch.manual_seed(0)
    net = UNet(cfg.model, image_size=cfg.data.image_size).place(device)
    bs, s = min(cfg.train.batch_size, 16), cfg.data.image_size
    y0 = torch.rand(bs, 3, s, s, device=device) * 2 - 1
    mask = torch.ones(bs, 1, s, s, device=device)
    sched = schedule_from_config(cfg.diffusion)
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(net.parameters())
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        loss = palette_loss(net, y0, y0, mask, sched, g, cfg.diffusion.loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    train_s = min(times[1:]) / bs
    net.eval()
    with torch.inference_mode():
        x = torch.cat([y0, y0], 1)
        gamma = torch.rand(bs, device=device)
        net(x, gamma)
        t0 = time.perf_counter()
        net(x, gamma)
        infer_s = (time.perf_counter() - t0) / bs
    return train_s, infer_s


def estimate(study: Study, sizes: dict, device) -> list[dict]:
    device = resolve_device(device)
    measured: dict[str, tuple[float, float]] = {}
    seen_runs: set[str] = set()
    rows = []
    from .report.labels import study_names

    names = study_names(study)
    for t in study.trials:
        total = 0.0
        for run in t.run.chain():
            cfg = run.config
            key = cfg.model.model_dump_json() + str(cfg.data.image_size) + str(cfg.train.batch_size)
            if key not in measured:
                measured[key] = _seconds_per_image(cfg, device)
            train_s, infer_s = measured[key]
            images, forwards = run_work(cfg, sizes[size_key(cfg.data)][0])  # bench/cost.py
            cost = images * train_s + forwards * infer_s
            if run.key not in seen_runs:
                seen_runs.add(run.key)
                total += cost
        # the config's name says its subsets and transfer source (report/labels.py)
        rows.append({"stage": t.run.stage, "config": names[t.key], "seed": t.seed,
                     "epochs": t.run.config.train.total_epochs, "minutes": round(total / 60, 1)})
    return rows


def print_plan(study: Study, sizes: dict, device) -> None:
    console.print(f"study {study.name} from {study.path} at scale '{study.scale}': {len(study.trials)} trials, "
                  f"axes: {', '.join(study.axes) or 'none'}")
    for name, (n_train, n_test) in sizes.items():
        console.print(f"  data {name}: {n_train} train / {n_test} test images")
    rows = estimate(study, sizes, device)
    print_table("expanded grid (shared upstream runs counted once)", rows)
    console.print(f"estimated total: {sum(r['minutes'] for r in rows):.1f} min on {resolve_device(device)} "
                  f"(measured train/sampling cost per image; excludes FID feature extraction)")
