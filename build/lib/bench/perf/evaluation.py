"""Sampling and FID-feature throughput (`bench perf`).

Sampling: the shared loop model/sample.py with DDPM over all T steps of a short schedule (per-step cost
reported too, so any T can be extrapolated) and DDIM over k steps, our UNet at the run's config.
FID features: ``model.metrics.inception.extract_features`` against pytorch-fid's own path on the same
uint8 images: its InceptionV3 module as built (eager, NCHW contiguous, batch norm unfolded) under
``torch.no_grad``, exactly the loop body of ``pytorch_fid.fid_score.get_activations`` without the file
reading; the features are compared (max abs difference).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from model.config import RunConfig
from model.sample import sample
from model.samplers import DDIMSampler, DDPMSampler
from model.schedule import schedule_from_config
from model.tasks import make_task
from model.unet import UNet, unzero

from .timing import Timing, alternate


def _inputs(cfg: RunConfig, batch: int, device: torch.device):
    S = cfg.data.image_size
    gens = [torch.Generator().manual_seed(i) for i in range(batch)]
    low = torch.rand(batch, 3, max(2, S // 8), max(2, S // 8), generator=gens[0]) * 2 - 1
    y0 = nn.functional.interpolate(low, size=(S, S), mode="bilinear", align_corners=False)
    cond, mask = make_task(cfg.task).make(y0, gens)
    return cond.to(device), mask.to(device), y0.to(device), gens


def sampling(cfg: RunConfig, device: torch.device, batch: int, ddpm_steps: int, ddim_steps: int,
             rounds: int) -> dict[str, Timing]:
    """Images/s of DDPM (T = ddpm_steps) and DDIM (k = ddim_steps of that T), plus the no_grad ablation."""
    net = unzero(UNet(cfg.model, cfg.data.image_size)).place(device).eval()  # samples not trivially the noise
    short = cfg.diffusion.model_copy(update={"timesteps": ddpm_steps, "match_terminal": None})
    schedule = schedule_from_config(short)
    cond, mask, y_known, gens = _inputs(cfg, batch, device)

    def run(sampler, grad_mode=None):
        def fn():
            for i, g in enumerate(gens):  # the same noise every call
                g.manual_seed(i)
            if grad_mode is None:
                return sample(net, cond, mask, y_known, sampler, gens)
            with grad_mode():  # the loop without sample()'s own inference_mode
                return sample.__wrapped__(net, cond, mask, y_known, sampler, gens)
        return fn

    ddpm, ddim = DDPMSampler(schedule), DDIMSampler(schedule, steps=ddim_steps)
    contenders = {f"DDPM, T={ddpm_steps}": (run(ddpm), batch),
                  f"DDIM, k={ddim_steps}": (run(ddim), batch),
                  f"DDIM, k={ddim_steps}, no_grad instead of inference_mode": (run(ddim, torch.no_grad), batch)}
    return alternate(contenders, rounds, device)


def fid_features(device: torch.device, n_images: int, size: int, rounds: int, batch: int = 50) -> dict:
    """Our extract_features vs pytorch-fid's path: images/s of each, speed-up, max |feature difference|."""
    from model.metrics import inception

    rng = np.random.default_rng(0)
    low = torch.from_numpy(rng.random((n_images, 3, 8, 8), dtype=np.float32))
    imgs = nn.functional.interpolate(low, size=(size, size), mode="bicubic").clamp(0, 1)
    images = (imgs * 255).round().byte().permute(0, 2, 3, 1).contiguous().numpy()  # uint8 NHWC
    theirs_net = inception.build_inception().to(device)  # pytorch-fid's module as built: eager, NCHW
    inception.load_inception(device, fast=True)  # our cached copy, built outside the timings
    out = {}

    def ours():
        out["ours"] = inception.extract_features(images, device, batch_size=batch)

    def theirs():  # get_activations' loop body: ToTensor (float / 255, NCHW contiguous), no_grad, squeeze
        feats = np.empty((n_images, inception.FEATURE_DIM))
        for start in range(0, n_images, batch):
            x = torch.from_numpy(images[start:start + batch]).permute(0, 3, 1, 2).float().div(255)
            with torch.no_grad():
                pred = theirs_net(x.contiguous().to(device))[0]
            feats[start:start + len(x)] = pred.squeeze(3).squeeze(2).cpu().numpy()
        out["pytorch-fid"] = feats

    timings = alternate({"ours (extract_features)": (ours, n_images),
                         "pytorch-fid InceptionV3 path": (theirs, n_images)}, rounds, device)
    diff = float(np.abs(out["ours"] - out["pytorch-fid"]).max())
    return {"timings": timings, "max_abs_diff": diff, "n_images": n_images, "size": size, "batch": batch}

