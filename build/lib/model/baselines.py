"""Trivial baselines: outputs any model must beat, scored by the project's own evaluator on its own samples.

A model that scores worse than copying its input has learned nothing useful, whatever its curve looks like.
One function per baseline, one interface for all: `baseline(cond, mask) -> output`, with cond [B, 3, H, W]
in [-1, 1] (the task's condition: known pixels are the ground truth's, the hole holds noise or, for
colorization, the gray image) and mask [B, 1, H, W] (1 = unknown, to generate). The output is
[B, 3, H, W] in [-1, 1] and keeps every known pixel of cond.

`trivial_scores(cfg)` builds every baseline of cfg's task on exactly the samples `Evaluator` uses (split,
per-sample seeds, masks, N) and scores them with `Evaluator.score`; results are cached as JSON under the
cache root next to the reference statistics, keyed by data, task and evaluation settings.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from skimage.restoration import inpaint_biharmonic

from .checkpoint import atomic_write_bytes, remove_stale_temporaries
from .config import RunConfig
from .data.cache import cache_root
from .metrics.reference import pixels_digest

VERSION = "trivial-baselines/v1"  # bump when a baseline or the scoring changes: old cache entries are ignored


def _known(mask: torch.Tensor) -> np.ndarray:
    """[B, 1, H, W] float mask -> [B, H, W] bool of known pixels; every image must have some."""
    known = mask[:, 0].detach().cpu().numpy() < 0.5
    if not known.reshape(len(known), -1).any(axis=1).all():
        raise ValueError("a baseline that fills a hole needs known pixels in every image (mask is all ones)")
    return known


def _paste(cond: torch.Tensor, fill: np.ndarray, mask: torch.Tensor) -> torch.Tensor:
    """Known pixels from cond, hole from fill ([B, 3, H, W] numpy), clamped to [-1, 1]."""
    fill_t = torch.from_numpy(np.ascontiguousarray(fill)).to(cond.device, cond.dtype).clamp(-1, 1)
    return cond * (1.0 - mask) + fill_t * mask


def gray_copy(cond: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Colorization: the gray condition (luma in all three channels) returned as the colour output."""
    return cond.clone()


def mean_fill(cond: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Inpainting: the hole filled with the per-channel mean colour of the image's known pixels."""
    known = torch.from_numpy(_known(mask)).to(cond.device)[:, None].to(cond.dtype)  # [B, 1, H, W]
    mean = (cond * known).sum((2, 3), keepdim=True) / known.sum((2, 3), keepdim=True)  # [B, 3, 1, 1]
    return cond * (1.0 - mask) + mean * mask


def edge_replication(cond: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Uncropping: every hidden pixel copies its nearest known pixel (Euclidean distance transform).

    For a hidden half this repeats the known edge row or column outward; for a hidden border frame it is
    numpy's `pad(mode="edge")` of the known centre.
    """
    known = _known(mask)
    x = cond.detach().cpu().numpy()
    fill = np.empty_like(x)
    for i in range(len(x)):
        _, (rows, cols) = ndimage.distance_transform_edt(~known[i], return_indices=True)
        fill[i] = x[i][:, rows, cols]
    return _paste(cond, fill, mask)


def biharmonic(cond: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Classical inpainting: scikit-image's `restoration.inpaint_biharmonic` (the hole as the smooth
    solution of the biharmonic equation with the known pixels as boundary values; Damelin & Hoang 2018)."""
    known = _known(mask)
    x = cond.detach().cpu().to(torch.float64).numpy().transpose(0, 2, 3, 1)  # [B, H, W, 3]
    fill = np.stack([inpaint_biharmonic(img, ~k, channel_axis=-1) for img, k in zip(x, known, strict=True)])
    return _paste(cond, fill.transpose(0, 3, 1, 2), mask)


Baseline = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# task name -> {baseline name: function}, in the order the report lists them
BASELINES: dict[str, dict[str, Baseline]] = {
    "colorization": {"gray_copy": gray_copy},
    "inpainting": {"mean_fill": mean_fill, "biharmonic": biharmonic},
    "uncropping": {"edge_replication": edge_replication, "biharmonic": biharmonic},
}


def _cache_key(cfg: RunConfig, ev) -> str:
    key = {**ev.ref_key, "categories": cfg.data.categories, "task": cfg.task.model_dump(mode="json"),
           "seed": ev.seed, "metrics": sorted(cfg.eval.metrics), "baselines": list(BASELINES[cfg.task.name]),
           "shape": list(ev.targets.shape), "pixels": pixels_digest(ev.targets), "version": VERSION,
           **({"mmse_samples": ev.mmse_samples} if ev.mmse_samples > 1 else {})}
    return json.dumps(key, sort_keys=True)


def trivial_scores(cfg: RunConfig, device="cpu") -> dict[str, dict]:
    """{baseline name: Evaluator.score metrics + n_samples} for cfg's task on the evaluator's own samples.

    Read from `<cache root>/baselines/trivial-<sha256[:16]>.json` when present for the same key, else
    computed (Inception features for FID/KID on `device`) and written atomically.
    """
    from .evaluate import Evaluator  # evaluate imports the network stack; only needed here

    ev = Evaluator(cfg, device=device)
    key = _cache_key(cfg, ev)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    path = cache_root(cfg.data.cache_dir) / "baselines" / f"trivial-{digest}.json"
    try:
        cached = json.loads(path.read_text())
        if cached.get("key") == key:
            return cached["scores"]
    except (OSError, ValueError, AttributeError):
        pass  # absent or unreadable: recompute
    gt, cond, mask = ev.inputs()
    scores = {}
    for name, baseline in BASELINES[cfg.task.name].items():
        output = baseline(cond, mask)
        scores[name] = {**ev.score(output, mask), "n_samples": ev.n}
        if ev.mmse_samples > 1:  # a deterministic output is its own mean: the *_mmse columns compare like with like
            scores[name] |= ev.distortion(output, gt, mask, suffix="_mmse")
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent)  # what killed writers left
    payload = json.dumps({"key": key, "scores": scores}, indent=1).encode()
    atomic_write_bytes(Path(path), lambda f: f.write(payload))
    return scores
