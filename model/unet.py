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


def gamma_embedding(gamma: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding of the noise level, [B] -> [B, dim] (Transformer / DDPM positional encoding).

    gamma is multiplied by GAMMA_SCALE first: the fastest frequency is 1, so raw gamma in [0, 1] would use
    less than one period of every sinusoid and nearby noise levels would embed almost identically.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=gamma.device) / half)
    args = GAMMA_SCALE * gamma.float()[:, None] * freqs[None, :]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


def zero_init(module: nn.Module) -> nn.Module:
    """Zero weights and bias: a residual branch starts as the identity, the output layer predicts 0."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


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
        qkv = self.qkv(self.norm(x)).permute(0, 2, 3, 1).contiguous()
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
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)
        h = torch.addcmul(shift, self.norm2(h), 1 + scale)
        h = self.conv2(self.dropout(F.silu(h)))
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
        if cfg.channels_last:
            self.to(memory_format=torch.channels_last)  # conv weights too, so oneDNN / cuDNN skip reorders

    def forward(self, x: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        """x: [B, in_channels, H, W] = (condition, noisy target); gamma: [B] noise levels -> eps."""
        emb = self.embed(gamma_embedding(gamma, self.cfg.base_channels))
        h = x.contiguous(memory_format=torch.channels_last) if self.cfg.channels_last else x
        skips = []
        for block in self.encoder:
            h = block(h, emb) if isinstance(block, ResBlock) else block(h)
            skips.append(h)
        for block in self.middle:
            h = block(h, emb)
        for block in self.decoder:
            h = block(torch.cat([h, skips.pop()], dim=1), emb) if isinstance(block, ResBlock) else block(h)
        return self.out(h)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
