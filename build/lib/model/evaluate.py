"""Evaluation of a trained model: sample the task on a split with the EMA weights, then score it.

Sample i uses its own seeds (mask/condition: seed + i; sampling noise: a second stream; the further draws of
`eval.mmse_samples`: a stream each), so the same call gives the same numbers and two configs are compared on
paired samples (edm). When more samples are asked for than the split has images, the split is cycled with
fresh masks and noise (reference statistics are computed over the same cycled ground truth).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .checkpoint import latest_checkpoint, load_checkpoint
from .config import RunConfig
from .data import load_split
from .data.cache import cache_root
from .device import autocast_context, resolve_device
from .errors import CheckpointError
from .heldout import HeldOutLoss
from .metrics.bootstrap import standard_errors
from .metrics.fid import fid_from_features
from .metrics.image import image_metrics
from .metrics.inception import extract_features
from .metrics.kid import kernel_inception_distance
from .metrics.reference import reference_stats
from .sample import sample
from .samplers import make_sampler
from .schedule import schedule_from_config
from .tasks import make_task
from .unet import UNet

NOISE_STREAM = 1_000_003  # offset between a sample's condition seed and its sampling-noise seed


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """[-1, 1] NCHW float -> uint8 NHWC."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def triplet_grid(gt: np.ndarray, inp: np.ndarray, out: np.ndarray) -> Image.Image:
    """Rows of ground truth | input | output (the paper's Figures 10-14)."""
    rows = [np.concatenate([g, i, o], axis=1) for g, i, o in zip(gt, inp, out, strict=True)]
    return Image.fromarray(np.concatenate(rows, axis=0))


class Evaluator:
    """Called by the trainer as `evaluator(ema_net, epoch) -> metrics` at each evaluation epoch."""

    def __init__(self, cfg: RunConfig, device="auto", out_dir: Path | None = None, split: str = "test",
                 n_samples: int | None = None, sampler: str | None = None, steps: int | None = None,
                 seed: int | None = None, save_all: bool = False, mmse_samples: int | None = None):
        ec = cfg.eval
        self.mmse_samples = mmse_samples or ec.mmse_samples
        self.cfg, self.device, self.out_dir, self.save_all = cfg, resolve_device(device), out_dir, save_all
        self.n = n_samples or ec.n_samples
        self.seed = ec.seed if seed is None else seed
        self.sampler_name, self.steps = sampler or ec.sampler, steps or ec.steps
        data = load_split(cfg.data, split)
        self.targets = data.images[np.arange(self.n) % len(data.images)]
        self.task = make_task(cfg.task)
        self.sampler = make_sampler(self.sampler_name, schedule_from_config(cfg.diffusion), self.steps, ec.eta,
                                    cfg.diffusion.prediction)
        self.heldout = None
        if ec.loss_levels:  # fixed inputs: the same images and conditions as the samples (model/heldout.py)
            y0, cond, mask = self.inputs()
            self.heldout = HeldOutLoss(y0, cond, mask, self.sampler.schedule, ec.loss_levels,
                                       cfg.diffusion.prediction, ec.batch_size)
        self.ref_key = {"source": cfg.data.source, "path": cfg.data.path, "split": split, "size": cfg.data.image_size,
                        "n": self.n, "max_images": cfg.data.max_images, "crops": cfg.data.crops_per_image,
                        "synthetic_count": cfg.data.synthetic_count, "test_fraction": cfg.data.test_fraction}

    def ground_truth(self, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Targets start..stop-1 as [n, 3, H, W] floats in [-1, 1] on the CPU."""
        return torch.from_numpy(self.targets[start:stop]).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)

    def _batch(self, start: int, stop: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Targets, conditions and masks of samples start..stop-1 on `device`; sample i's condition is seeded
        seed + i, so it is the same in `generate` and `inputs`."""
        y0 = self.ground_truth(start, stop).to(device)
        cond, mask = self.task.make(y0, [torch.Generator().manual_seed(self.seed + i) for i in range(start, stop)])
        return y0, cond, mask

    def inputs(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """What `generate` feeds the network, without one: (targets, conditions, masks) on the CPU,
        [n, 3, H, W] in [-1, 1] and [n, 1, H, W], batched as `generate` batches them."""
        bs = self.cfg.eval.batch_size
        parts = [self._batch(start, min(start + bs, self.n), "cpu") for start in range(0, self.n, bs)]
        return tuple(torch.cat(p) for p in zip(*parts, strict=True))

    def generate(self, net: torch.nn.Module, return_intermediates: bool = False, draw: int = 0):
        """All n samples: (outputs, conditions, masks) as float tensors on the CPU, and seconds per image.
        `draw` k > 0 samples the same inputs again with noise stream k + 1 (the MMSE estimate's extra draws)."""
        outs, conds, masks, strip = [], [], [], None
        seconds = 0.0
        bs = self.cfg.eval.batch_size
        for start in range(0, self.n, bs):
            idx = range(start, min(start + bs, self.n))
            y0, cond, mask = self._batch(idx.start, idx.stop, self.device)
            noise_gens = [torch.Generator(self.device).manual_seed(self.seed + (draw + 1) * NOISE_STREAM + i)
                          for i in idx]
            t0 = time.perf_counter()
            with autocast_context(self.device):
                result = sample(net, cond, mask, y0, self.sampler, noise_gens,
                                return_intermediates=return_intermediates and start == 0)
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            seconds += time.perf_counter() - t0
            if isinstance(result, tuple):
                result, strip = result
            outs.append(result.float().cpu())
            conds.append(cond.cpu())
            masks.append(mask.cpu())
        return torch.cat(outs), torch.cat(conds), torch.cat(masks), seconds / self.n, strip

    def __call__(self, net: torch.nn.Module, epoch: int) -> dict:
        """Metrics of `net` after `epoch`: the held-out loss (`val_loss`, when eval.loss_levels > 0), and unless
        the epoch is due to eval.loss_every_epochs alone (EvalConfig.loss_only), the samples' KID, FID, L1, PSNR,
        SSIM; always eval_seconds and eval_cpu_seconds."""
        final = epoch >= self.cfg.train.total_epochs
        wall0, cpu0 = time.perf_counter(), time.process_time()  # process: all of torch's threads count
        was_training = net.training
        net.eval()
        loss = {} if self.heldout is None else {"val_loss": self.heldout(net)}
        if self.heldout is not None and self.cfg.eval.loss_only(epoch, self.cfg.train.total_epochs):
            net.train(was_training)
            return {**loss, "eval_seconds": time.perf_counter() - wall0,
                    "eval_cpu_seconds": time.process_time() - cpu0}
        out, cond, mask, sec_per_image, strip = self.generate(net, return_intermediates=final)
        draws = [out] + [self.generate(net, draw=k)[0] for k in range(1, self.mmse_samples)]
        net.train(was_training)
        metrics = {**loss, **self.score(out, mask)}
        if self.mmse_samples > 1:  # the Monte Carlo posterior mean (eval.mmse_samples says why)
            metrics.update(self.distortion(torch.stack(draws).mean(0), self.ground_truth(), mask, suffix="_mmse"))
            metrics["mmse_samples"] = self.mmse_samples
        metrics.update(n_samples=self.n, sample_seconds_per_image=sec_per_image,
                       sampler=f"{self.sampler_name}-{self.steps if self.sampler_name == 'ddim' else 'all'}")
        if final and self.cfg.eval.ddpm_timing_samples:
            metrics["ddpm_seconds_per_image"] = self.time_ddpm(net, self.cfg.eval.ddpm_timing_samples)
        metrics.update(eval_seconds=time.perf_counter() - wall0, eval_cpu_seconds=time.process_time() - cpu0)
        if self.out_dir is not None:
            self.save(epoch, out, cond, strip, final, metrics)
        return metrics

    def time_ddpm(self, net: torch.nn.Module, n: int) -> float:
        """Seconds per image of ancestral sampling over all T steps of the training schedule."""
        ddpm = make_sampler("ddpm", self.sampler.schedule, prediction=self.cfg.diffusion.prediction)
        y0, cond, mask = self._batch(0, n, self.device)
        gens = [torch.Generator(self.device).manual_seed(self.seed + NOISE_STREAM + i) for i in range(n)]
        net.eval()
        t0 = time.perf_counter()
        with autocast_context(self.device):
            sample(net, cond, mask, y0, ddpm, gens)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - t0) / n

    def score(self, out: torch.Tensor, mask: torch.Tensor) -> dict:
        metrics_wanted = set(self.cfg.eval.metrics)
        metrics: dict = {}
        if metrics_wanted & {"fid", "kid"}:
            ref = reference_stats(self.targets, self.ref_key, cache_root(self.cfg.data.cache_dir) / "fid-stats",
                                  device=self.device)
            feats = extract_features(to_uint8(out), device=self.device)
            if "fid" in metrics_wanted:
                metrics["fid"] = fid_from_features(feats, ref["features"])  # same value, cheaper for small N
            if "kid" in metrics_wanted:
                metrics["kid"], metrics["kid_std"] = kernel_inception_distance(feats, ref["features"])
        per_image = self.per_image(out, self.ground_truth(), mask)
        metrics.update({k: float(v.mean()) for k, v in per_image.items()})
        # <metric>_se: the sampling uncertainty over these n samples (a paired bootstrap; kid_std above is NaN
        # whenever n is below KID's subset size, since every subset is then the whole set)
        paired = bool(metrics_wanted & {"fid", "kid"}) and len(feats) == len(ref["features"])
        metrics.update(standard_errors(per_image, feats if paired else None, ref["features"] if paired else None,
                                       [k for k in ("fid", "kid") if k in metrics_wanted and paired]))
        return metrics

    def distortion(self, out: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor, suffix: str = "") -> dict:
        """The L1 / PSNR / SSIM asked for in `eval.metrics` of out against gt (both [n, 3, H, W] in [-1, 1]),
        averaged over images, over the hole too where the task has one; each key ends with `suffix`."""
        return {f"{k}{suffix}": float(v.mean()) for k, v in self.per_image(out, gt, mask).items()}

    def per_image(self, out: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> dict[str, np.ndarray]:
        """The L1 / PSNR / SSIM asked for in `eval.metrics`, one float64 value per image [n]."""
        hole = None if self.cfg.task.name == "colorization" else mask
        wanted = set(self.cfg.eval.metrics)
        return {k: v for k, v in image_metrics(out, gt, hole).items() if k.split("_")[0] in wanted}

    def save(self, epoch: int, out, cond, strip, final: bool, metrics: dict) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        k = self.cfg.eval.save_images
        gt = self.targets[:k]
        if k:
            grid = triplet_grid(gt, to_uint8(cond[:k]), to_uint8(out[:k]))
            grid.save(self.out_dir / f"triplets-epoch{epoch:04d}.png")
        if final and strip is not None:
            frames = [to_uint8(s[:1])[0] for s in strip]
            Image.fromarray(np.concatenate(frames, axis=1)).save(self.out_dir / "denoising-strip.png")
        if final and self.save_all:
            folder = self.out_dir / "samples"
            folder.mkdir(exist_ok=True)
            for i, img in enumerate(to_uint8(out)):
                Image.fromarray(img).save(folder / f"{i:05d}.png")
        (self.out_dir / f"metrics-epoch{epoch:04d}.json").write_text(json.dumps(metrics, indent=2, default=str))


def load_ema_network(run_dir: Path, device) -> tuple[torch.nn.Module, RunConfig, dict]:
    """The EMA weights of a run's newest checkpoint, in eval mode."""
    path = latest_checkpoint(Path(run_dir) / "checkpoints")
    if path is None:
        raise CheckpointError(f"{run_dir}: no checkpoint found (train it first)")
    ckpt = load_checkpoint(path, map_location=device)
    cfg = RunConfig.model_validate_json(ckpt["config"])
    net = UNet(cfg.model, image_size=cfg.data.image_size).place(device)
    ema_state = {k.removeprefix("module."): v for k, v in ckpt["ema"].items() if k.startswith("module.")}
    net.load_state_dict(ema_state)
    return net.eval(), cfg, ckpt


def evaluate(run_dir: Path, split: str = "test", n_samples: int | None = None, sampler: str | None = None,
             steps: int | None = None, seed: int | None = None, device="auto", mmse_samples: int | None = None,
             phema_std: float | None = None) -> dict:
    """Sample a trained run on `split` with its EMA weights; save samples, triplets and metrics.json into
    `run_dir/eval/<split>-<sampler>-n<N>-seed<S>[-mmse<K>][-phema<std>]/`. Returns the metrics and that folder
    (`out_dir`). phema_std: use the post-hoc EMA of that sigma_rel, rebuilt from `run_dir/phema/` (model/phema.py)."""
    device = resolve_device(device)
    net, cfg, ckpt = load_ema_network(run_dir, device)
    phema_info = None
    if phema_std is not None:
        from .phema import reconstruct

        state, phema_info = reconstruct(Path(run_dir) / "phema", phema_std)
        net.load_state_dict(state)
    ev = Evaluator(cfg, device, None, split, n_samples, sampler, steps, seed, save_all=True, mmse_samples=mmse_samples)
    name = f"{split}-{ev.sampler_name}{ev.steps if ev.sampler_name == 'ddim' else ''}-n{ev.n}-seed{ev.seed}"
    name += f"-mmse{ev.mmse_samples}" if ev.mmse_samples > 1 else ""
    name += f"-phema{phema_std:g}" if phema_std is not None else ""
    ev.out_dir = Path(run_dir) / "eval" / name
    epoch = ckpt["progress"]["epoch"]
    metrics = ev(net, max(epoch, cfg.train.total_epochs))
    metrics["epoch"] = epoch
    if phema_info is not None:
        metrics["phema"] = {k: v for k, v in phema_info.items() if k != "coefficients"}
    (ev.out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
    return {**metrics, "out_dir": str(ev.out_dir)}
