"""Ground-truth image metrics: L1, PSNR, SSIM, whole image and over the hole of a mask.

Inputs are float tensors [B, C, H, W] in [-1, 1] (project convention); every metric is computed after
mapping to [0, 1] (data range 1), so L1 is in [0, 1] units and PSNR = 10 log10(1 / MSE).
Identical images have infinite PSNR: it is capped at ``PSNR_CAP_DB`` (100 dB) so means stay finite.
Masks are [B, 1, H, W] with 1 = hole; masked ("_hole") variants average only over hole pixels.
All per-image results are float64 [B]; an image whose hole is empty gets NaN for its hole metrics.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

PSNR_CAP_DB = 100.0
SSIM_WINDOW, SSIM_SIGMA = 11, 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _unit(x: torch.Tensor) -> torch.Tensor:
    return (x.detach().to(torch.float64) + 1.0) / 2.0


def _check(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> None:
    if pred.ndim != 4 or pred.shape != target.shape:
        raise ValueError(f"expected two [B, C, H, W] tensors of one shape, got {pred.shape}, {target.shape}")
    if mask is not None and mask.shape != (pred.shape[0], 1, *pred.shape[2:]):
        raise ValueError(f"mask must be [B, 1, H, W] matching {tuple(pred.shape)}, got {tuple(mask.shape)}")


def _mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Per-image mean of [B, C', H, W] values, over all pixels or only where mask [B, 1, H, W] is 1."""
    if mask is None:
        return values.flatten(1).mean(1)
    weights = mask.to(values.dtype).expand_as(values)
    return (values * weights).flatten(1).sum(1) / weights.flatten(1).sum(1)  # 0/0 -> NaN: empty hole


def l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean absolute error per image, in [0, 1] units."""
    _check(pred, target, mask)
    return _mean((_unit(pred) - _unit(target)).abs(), mask)


def psnr(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """PSNR (dB) per image on [0, 1], capped at ``PSNR_CAP_DB``."""
    _check(pred, target, mask)
    mse = _mean((_unit(pred) - _unit(target)) ** 2, mask)
    return (10.0 * torch.log10(1.0 / mse)).clamp(max=PSNR_CAP_DB)  # NaN (empty hole) stays NaN


def _gaussian_window(channels: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    x = torch.arange(SSIM_WINDOW, dtype=dtype, device=device) - (SSIM_WINDOW - 1) / 2
    g = torch.exp(-(x**2) / (2 * SSIM_SIGMA**2))
    g = g / g.sum()
    return torch.outer(g, g).expand(channels, 1, SSIM_WINDOW, SSIM_WINDOW).contiguous()


def ssim_map(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """SSIM map [B, C, H-10, W-10] (Wang et al. 2004, eq. 13): Gaussian window 11, sigma 1.5,
    C1 = (0.01)^2, C2 = (0.03)^2 for data range 1, per channel, 'valid' windows only (the map of
    skimage's ``structural_similarity(gaussian_weights=True, use_sample_covariance=False)`` with
    its border crop)."""
    x, y = _unit(pred), _unit(target)
    if min(x.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {tuple(x.shape)}")
    w = _gaussian_window(x.shape[1], x.dtype, x.device)

    def filt(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, w, groups=x.shape[1])

    mu_x, mu_y = filt(x), filt(y)
    var_x, var_y, cov = filt(x * x) - mu_x**2, filt(y * y) - mu_y**2, filt(x * y) - mu_x * mu_y
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))


def ssim(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean SSIM per image; with a mask, the SSIM map averaged over hole pixels (mask cropped like
    the map, i.e. hole pixels within 5 px of the border are not counted)."""
    _check(pred, target, mask)
    smap = ssim_map(pred, target)
    if mask is not None:
        r = (SSIM_WINDOW - 1) // 2
        mask = mask[..., r:-r, r:-r]
    return _mean(smap, mask)


def image_metrics(pred: torch.Tensor, target: torch.Tensor,
                  mask: torch.Tensor | None = None) -> dict[str, np.ndarray]:
    """Per-image float64 arrays: ``l1``, ``psnr``, ``ssim``; with a mask also ``l1_hole``,
    ``psnr_hole``, ``ssim_hole``."""
    out = {name: fn(pred, target) for name, fn in (("l1", l1), ("psnr", psnr), ("ssim", ssim))}
    if mask is not None:
        out |= {f"{name}_hole": fn(pred, target, mask) for name, fn in (("l1", l1), ("psnr", psnr),
                                                                        ("ssim", ssim))}
    return {k: v.cpu().numpy() for k, v in out.items()}
