"""The Palette / guided-diffusion UNet (Dhariwal & Nichol 2021; Saharia et al. 2022), conditioned on gamma.

Input: the condition image concatenated with the noisy target, [B, 6, H, W]. Output: the predicted noise
eps, [B, 3, H, W]. The network sees the noise level gamma (a continuous float in [0, 1] per sample), never
a step index, so a model trained with one schedule can be sampled with another.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from model.config import UNetConfig
from model.errors import ConfigError

GAMMA_SCALE = 1000.0  # gamma in [0, 1] is spread over [0, 1000], the range of DDPM step indices
FUSED_GROUP_NORM = True  # switch for the ablation in bench/perf/train.py; same maths either way


def gamma_embedding(gamma: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding of the noise level, [B] -> [B, dim] (Transformer / DDPM positional encoding).

    gamma is multiplied by GAMMA_SCALE first: the fastest frequency is 1, so raw gamma in [0, 1] would use
    less than one period of every sinusoid and nearby noise levels would embed almost identically.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=gamma.device) / half)
    args = GAMMA_SCALE * gamma.float()[:, None] * freqs[None, :]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


def _group_stats(x3: torch.Tensor, groups: int, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and 1/std of each (sample, group) of x3 [B, HW, C], repeated per channel: two [B, C] tensors.

    Per-channel sums first (fast: the reduction runs along rows of contiguous channels), then per group;
    the variance is two-pass (centred), as accurate as torch's own kernel.
    """
    B, N, C = x3.shape
    n = N * (C // groups)

    def per_group(t: torch.Tensor) -> torch.Tensor:  # [B, C] per-channel sums -> [B, C] group means
        return t.view(B, groups, -1).sum(2, keepdim=True).div_(n).expand(B, groups, C // groups).reshape(B, C)

    mean = per_group(x3.sum(1))
    centred = x3 - mean.unsqueeze(1)
    rstd = per_group(centred.mul_(centred).sum(1)).add_(eps).rsqrt_()
    return mean, rstd


def _affine(mean, rstd, weight, bias, scale, shift) -> tuple[torch.Tensor, torch.Tensor]:
    """y = x * a + d folds normalisation, the norm's affine and the scale-shift: a, d are [B, C]."""
    a = rstd * weight
    d = bias - mean * a
    if scale is not None:
        a = a * (1.0 + scale)
        d = torch.addcmul(shift, d, 1.0 + scale)
    return a, d


def _norm_act(x3, groups, weight, bias, eps, scale, shift, act):
    """The fused forward on [B, HW, C]: (output, mean, rstd, a, d), the last four for the backward."""
    mean, rstd = _group_stats(x3, groups, eps)
    a, d = _affine(mean, rstd, weight, bias, scale, shift)
    y = torch.addcmul(d.unsqueeze(1), x3, a.unsqueeze(1))
    return (F.silu(y, inplace=True) if act else y), mean, rstd, a, d


class _GroupNormAct(torch.autograd.Function):
    """silu(group_norm(x) * (1 + scale) + shift) on a channels-last [B, HW, C] view, forward and backward
    written out with [B, C] coefficients; only x is kept for the backward (the SiLU input is recomputed)."""

    @staticmethod
    def forward(ctx, x3, groups, weight, bias, eps, scale, shift, act):
        y, mean, rstd, a, d = _norm_act(x3, groups, weight, bias, eps, scale, shift, act)
        ctx.save_for_backward(x3, mean, rstd, a, d, weight, bias, scale)
        ctx.groups, ctx.act = groups, act
        return y

    @staticmethod
    def backward(ctx, dz):
        x3, mean, rstd, a, d, weight, bias, scale = ctx.saved_tensors
        G, (B, C) = ctx.groups, mean.shape
        n = x3.shape[1] * (C // G)
        # y = a x + d (recomputed, not stored); dy: gradient at y, before the SiLU
        dy = torch.ops.aten.silu_backward(dz, torch.addcmul(d.unsqueeze(1), x3, a.unsqueeze(1))) if ctx.act else dz
        s = dy.sum(1)  # sum dy over positions, [B, C]
        p = ((dy * x3).sum(1) - mean * s) * rstd  # sum dy * xhat, xhat = (x - mean) rstd
        s1 = None if scale is None else 1.0 + scale
        k = weight.expand(B, C) if s1 is None else weight * s1  # d(y)/d(xhat)

        def group_mean(t):
            return t.view(B, G, -1).sum(2, keepdim=True).div_(n).expand(B, G, C // G).reshape(B, C)

        mean_dxhat, mean_dxhat_xhat = group_mean(k * s), group_mean(k * p)
        # dx = rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)) = a dy + beta x + gamma
        beta = -rstd * rstd * mean_dxhat_xhat
        gamma = rstd * (rstd * mean_dxhat_xhat * mean - mean_dxhat)
        dx = torch.addcmul(gamma.unsqueeze(1), x3, beta.unsqueeze(1)).addcmul_(dy, a.unsqueeze(1))
        dweight = (p if s1 is None else p * s1).sum(0)
        dbias = (s if s1 is None else s * s1).sum(0)
        dscale = None if scale is None else weight * p + bias * s
        dshift = None if scale is None else s
        return dx, None, dweight, dbias, None, dscale, dshift, None


def group_norm_act(
    x: torch.Tensor, norm: nn.GroupNorm, scale: torch.Tensor | None = None,
    shift: torch.Tensor | None = None, act: bool = True,
) -> torch.Tensor:
    """silu(norm(x) * (1 + scale) + shift) (without SiLU when act=False); scale, shift: [B, C] or None.

    On a channels_last float32 CPU tensor this runs a fused version (_GroupNormAct): torch's CPU group
    norm is several times slower channels_last than NCHW, and oneDNN's convolutions are faster channels_last;
    fused, the pair wins (bench perf, ablation 'fused group norm'). Elsewhere (CUDA, bf16 autocast,
    NCHW, torch.compile), the plain modules, which cuDNN / inductor handle well.
    """
    B, C, H, W = x.shape
    fused = (x.device.type == "cpu" and x.dtype == torch.float32 and FUSED_GROUP_NORM and H * W > 1
             and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
             and not torch.is_autocast_enabled("cpu") and not torch.compiler.is_compiling())
    if not fused:
        h = norm(x)
        if scale is not None:
            h = torch.addcmul(shift[:, :, None, None], h, 1.0 + scale[:, :, None, None])
        return F.silu(h) if act else h
    x3 = x.permute(0, 2, 3, 1).reshape(B, H * W, C)  # a view: channels_last memory is [B, H, W, C]
    tracked = (x, norm.weight, norm.bias, scale, shift)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tracked):
        y = _GroupNormAct.apply(x3, norm.num_groups, norm.weight, norm.bias, norm.eps, scale, shift, act)
    else:  # sampling: no autograd record
        y = _norm_act(x3, norm.num_groups, norm.weight, norm.bias, norm.eps, scale, shift, act)[0]
    return y.view(B, H, W, C).permute(0, 3, 1, 2)


def zero_init(module: nn.Module) -> nn.Module:
    """Zero weights and bias: a residual branch starts as the identity, the output layer predicts 0."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def unzero(net: nn.Module, seed: int = 1) -> nn.Module:
    """Re-initialise the zero-initialised convs (seeded), so that a fresh network's output depends on its input:
    for tests and benchmarks, where the predicted 0 of an untrained network would make everything trivial."""
    torch.manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.Conv2d) and not m.weight.any():
            m.reset_parameters()
    return net


class Attention(nn.Module):
    """Multi-head self-attention over the H*W positions, with a residual connection."""

    def __init__(self, channels: int, head_channels: int, norm_groups: int):
        super().__init__()
        heads = max(1, channels // head_channels)
        while channels % heads:  # e.g. 80 channels, 32 per head -> 2 heads of 40
            heads -= 1
        self.heads = heads
        self.norm = nn.GroupNorm(norm_groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = zero_init(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        # Via the logical NHWC order, which is correct for any memory format; contiguous() is free for
        # channels_last and one copy for NCHW, and gives head_dim stride 1, which the fused SDPA kernels need.
        qkv = self.qkv(group_norm_act(x, self.norm, act=False)).permute(0, 2, 3, 1).contiguous()
        qkv = qkv.reshape(B, H * W, 3, self.heads, C // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, heads, HW, head_dim]
        h = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(d)) v
        h = h.transpose(1, 2).reshape(B, H, W, C).permute(0, 3, 1, 2)
        return x + self.proj(h)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, with the gamma embedding as a scale and shift of the second norm
    ("use_scale_shift_norm": h = norm(h) * (1 + scale) + shift), then optional self-attention."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, cfg: UNetConfig, attention: bool):
        super().__init__()
        self.norm1 = nn.GroupNorm(cfg.norm_groups, in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * out_ch)
        self.norm2 = nn.GroupNorm(cfg.norm_groups, out_ch)
        self.dropout = nn.Dropout(cfg.dropout)
        self.conv2 = zero_init(nn.Conv2d(out_ch, out_ch, 3, padding=1))
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()
        self.attn = Attention(out_ch, cfg.head_channels, cfg.norm_groups) if attention else None

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(group_norm_act(x, self.norm1))
        scale, shift = self.emb(emb).chunk(2, dim=1)
        h = self.conv2(self.dropout(group_norm_act(h, self.norm2, scale, shift)))
        h = self.skip(x) + h
        return self.attn(h) if self.attn is not None else h


class Downsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def use_channels_last(setting: bool | str, device: str | torch.device) -> bool:
    """The memory format for `device`: 'auto' is channels_last on the CPU, where oneDNN's convolutions and the
    fused group norm above run faster in it, and NCHW on CUDA, where cuDNN's bf16 training step measured
    x1.20-1.27 faster in NCHW on an H100 (results/gpu/README.md)."""
    if setting == "auto":
        return torch.device(device).type == "cpu"
    return bool(setting)


class UNet(nn.Module):
    def __init__(self, cfg: UNetConfig, image_size: int, in_channels: int = 6, out_channels: int = 3):
        super().__init__()
        levels = len(cfg.channel_mults)
        if image_size % 2 ** (levels - 1):
            raise ConfigError(
                f"image_size={image_size} must be divisible by 2 ** (len(model.channel_mults) - 1)"
            )
        self.cfg = cfg
        base = cfg.base_channels
        emb_dim = 4 * base
        # The trailing SiLU is the one guided-diffusion puts in front of every block's Linear: done once here.
        self.embed = nn.Sequential(
            nn.Linear(base, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim), nn.SiLU()
        )

        # Encoder: every block's output is kept for a skip connection.
        self.encoder = nn.ModuleList([nn.Conv2d(in_channels, base, 3, padding=1)])
        skip_channels, ch, res = [base], base, image_size
        for level, mult in enumerate(cfg.channel_mults):
            for _ in range(cfg.num_res_blocks):
                self.encoder.append(ResBlock(ch, base * mult, emb_dim, cfg, res in cfg.attn_resolutions))
                ch = base * mult
                skip_channels.append(ch)
            if level < levels - 1:
                self.encoder.append(Downsample(ch))
                skip_channels.append(ch)
                res //= 2

        self.middle = nn.ModuleList(
            [ResBlock(ch, ch, emb_dim, cfg, attention=True), ResBlock(ch, ch, emb_dim, cfg, attention=False)]
        )

        # Decoder: one more res block per level than the encoder, each eating one skip.
        self.decoder = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mults))):
            for _ in range(cfg.num_res_blocks + 1):
                in_ch = ch + skip_channels.pop()
                self.decoder.append(ResBlock(in_ch, base * mult, emb_dim, cfg, res in cfg.attn_resolutions))
                ch = base * mult
            if level > 0:
                self.decoder.append(Upsample(ch))
                res *= 2

        self.out = nn.Sequential(
            nn.GroupNorm(cfg.norm_groups, ch), nn.SiLU(), zero_init(nn.Conv2d(ch, out_channels, 3, padding=1))
        )
        self.place("cpu")  # built on the CPU, in the CPU's memory format; place(device) moves it

    def place(self, device: str | torch.device) -> UNet:
        """Move to `device` in the memory format the config asks for there (see use_channels_last); the conv
        weights too, so oneDNN / cuDNN skip reorders."""
        self.channels_last = use_channels_last(self.cfg.channels_last, device)
        return self.to(device, memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)

    def forward(self, x: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        """x: [B, in_channels, H, W] = (condition, noisy target); gamma: [B] noise levels -> eps."""
        emb = self.embed(gamma_embedding(gamma, self.cfg.base_channels))
        h = x.contiguous(memory_format=torch.channels_last) if self.channels_last else x
        skips = []
        for block in self.encoder:
            h = block(h, emb) if isinstance(block, ResBlock) else block(h)
            skips.append(h)
        for block in self.middle:
            h = block(h, emb)
        for block in self.decoder:
            h = block(torch.cat([h, skips.pop()], dim=1), emb) if isinstance(block, ResBlock) else block(h)
        norm, _, conv = self.out  # GroupNorm, SiLU, conv: a Sequential for the checkpoints' key names
        return conv(group_norm_act(h, norm))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
