"""Training-step throughput (`bench perf`): our UNet against diffusers' UNet2DModel built to the same
architecture (equal parameters within 10 %, equal batch), and an ablation of each speed switch.

A training step is the trainer's (model/trainer.py): palette_loss (forward), backward, gradient clipping,
Adam, EMA update; the batch (y0, condition, mask) is made once, so only the step is timed. Both networks
get the same loss, optimiser and EMA; only the network differs. No weights are downloaded: the peer is
built from a config.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map

import model.unet as unet_module
from model.config import RunConfig
from model.device import autocast_context
from model.ema import make_ema
from model.objective import palette_loss
from model.schedule import schedule_from_config
from model.tasks import make_task
from model.unet import GAMMA_SCALE, UNet

from ..presets import SCALES
from .timing import Timing, alternate, count_flops

# The larger config: the UNetConfig default width (base 64, 7.3 M parameters) at the cpu preset's 32 px.
LARGER = {"model.base_channels": 64}


def preset_config(scale: str = "cpu", **dotted) -> RunConfig:
    from ..study import resolve_config

    return resolve_config([("scale preset", SCALES[scale]), ("perf", dotted)])


class PeerAdapter(nn.Module):
    """diffusers' UNet2DModel behind our interface: forward(x, gamma) -> eps. Like ours, it gets the noise
    level as a continuous "timestep" gamma * 1000 (its sinusoidal embedding accepts floats)."""

    def __init__(self, net: nn.Module, channels_last: bool):
        super().__init__()
        self.net, self.channels_last = net, channels_last

    def forward(self, x: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x, gamma * GAMMA_SCALE).sample

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


PEERS_HINT = "pip install -e '.[peers]'"


def peers_available() -> bool:
    """Whether diffusers (the peer of the training-step rows) is installed; it is an extra: `.[peers]`."""
    import importlib.util

    return importlib.util.find_spec("diffusers") is not None


def peer_unet(cfg: RunConfig, channels_last: bool = False) -> PeerAdapter:
    """UNet2DModel with our architecture: same widths, res blocks per level (+1 in the decoder), attention at
    the same resolutions (and in the middle block), scale-shift norm, GroupNorm groups, head width."""
    try:
        from diffusers import UNet2DModel
    except ImportError as e:
        raise ImportError(f"bench perf compares against diffusers: {PEERS_HINT}") from e
    m, size = cfg.model, cfg.data.image_size
    res, down = size, []
    for _ in m.channel_mults:
        down.append("AttnDownBlock2D" if res in m.attn_resolutions else "DownBlock2D")
        res //= 2
    up = [kind.replace("Down", "Up") for kind in reversed(down)]
    net = UNet2DModel(sample_size=size, in_channels=6, out_channels=3,
                      block_out_channels=tuple(m.base_channels * k for k in m.channel_mults),
                      layers_per_block=m.num_res_blocks, down_block_types=tuple(down), up_block_types=tuple(up),
                      attention_head_dim=m.head_channels, norm_num_groups=m.norm_groups, dropout=m.dropout,
                      resnet_time_scale_shift="scale_shift", time_embedding_type="positional")
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    return PeerAdapter(net, channels_last)


def make_batch(cfg: RunConfig, device: torch.device, channels_last: bool, seed: int = 0):
    """(y0, cond, mask) of one training batch, smooth random images through the configured task."""
    g = torch.Generator().manual_seed(seed)
    B, S = cfg.train.batch_size, cfg.data.image_size
    low = torch.rand(B, 3, max(2, S // 8), max(2, S // 8), generator=g) * 2 - 1
    y0 = nn.functional.interpolate(low, size=(S, S), mode="bilinear", align_corners=False).to(device)
    if channels_last:
        y0 = y0.contiguous(memory_format=torch.channels_last)
    cond, mask = make_task(cfg.task).make(y0, [g] * B)
    return y0, cond.to(device), mask.to(device)


def train_step(net: nn.Module, cfg: RunConfig, device: torch.device, channels_last: bool,
               optimizer: str = "foreach", context: Callable[[], contextlib.AbstractContextManager] | None = None,
               compiled: bool = False) -> Callable[[], float]:
    """The trainer's step on a fixed batch, as a closure; `optimizer`: foreach (the trainer's), fused, for-loop."""
    tc = cfg.train
    y0, cond, mask = make_batch(cfg, device, channels_last)
    schedule = schedule_from_config(cfg.diffusion)
    # on the device: palette_loss draws gamma and the noise with it, where y0 lives
    generator = torch.Generator(device=device).manual_seed(tc.seed)
    kwargs = {"foreach": {"foreach": True}, "fused": {"fused": True}, "for-loop": {"foreach": False}}[optimizer]
    opt = torch.optim.Adam(net.parameters(), lr=tc.lr, weight_decay=tc.weight_decay, **kwargs)
    ema = make_ema(net, tc.ema_decay, tc.ema_warmup)
    step_net = torch.compile(net) if compiled else net
    context = context or (lambda: autocast_context(device))

    def step() -> float:
        with context():
            loss = palette_loss(step_net, y0, cond, mask, schedule, generator, cfg.diffusion.loss)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if tc.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(net.parameters(), tc.grad_clip, foreach=True)
        opt.step()
        ema.update_parameters(net)
        return loss.item()

    return step


def step_flops(net: nn.Module, cfg: RunConfig, device: torch.device, channels_last: bool) -> int:
    """FLOPs of one forward + backward of the training loss (the optimiser's few FLOPs are left out)."""
    y0, cond, mask = make_batch(cfg, device, channels_last)
    schedule = schedule_from_config(cfg.diffusion)
    generator = torch.Generator(device=device).manual_seed(0)
    net = copy.deepcopy(net)
    return count_flops(lambda: palette_loss(net, y0, cond, mask, schedule, generator).backward())


@dataclass
class Contender:
    """One row of a comparison: the network, its FLOPs per step, its timing."""

    label: str
    params: int
    flops: int
    timing: Timing | None = None
    note: str = ""


def compare_training(cfg: RunConfig, device: torch.device, rounds: int) -> dict[str, Contender]:
    """Ours (default switches) vs the peer NCHW (diffusers' default) and channels_last, same rounds; ours alone
    when diffusers is not installed."""
    torch.manual_seed(0)
    ours = UNet(cfg.model, cfg.data.image_size).place(device)
    nets = {"ours": (ours, ours.channels_last)}
    if peers_available():
        nets["diffusers"] = (peer_unet(cfg, channels_last=False).to(device), False)
        nets["diffusers channels_last"] = (peer_unet(cfg, channels_last=True).to(device), True)
    rows, steps = {}, {}
    for name, (net, fmt) in nets.items():
        rows[name] = Contender(name, net.num_parameters(), step_flops(net, cfg, device, fmt))
        steps[name] = (train_step(net, cfg, device, fmt), cfg.train.batch_size)
    for name, timing in alternate(steps, rounds, device).items():
        rows[name].timing = timing
    return rows


def _flag(module, name: str, value) -> Callable[[], contextlib.AbstractContextManager]:
    @contextlib.contextmanager
    def ctx():
        old = getattr(module, name)
        setattr(module, name, value)
        try:
            yield
        finally:
            setattr(module, name, old)

    return ctx


def ablations(cfg: RunConfig, device: torch.device, rounds: int, with_compile: bool) -> dict[str, Contender]:
    """Each speed switch turned off (or an alternative turned on) alone, against the default, same rounds."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    torch.manual_seed(0)
    base = UNet(cfg.model.model_copy(update={"channels_last": True}), cfg.data.image_size)  # the CPU's default
    nchw = UNet(cfg.model.model_copy(update={"channels_last": False}), cfg.data.image_size)
    nchw.load_state_dict(base.state_dict())
    default_ctx = lambda: autocast_context(device)  # noqa: E731
    variants = {  # label: (network, channels_last, optimizer, context, compiled, note)
        "default (channels_last, fused GN, SDPA flash, foreach Adam)": (base, True, "foreach", None, False, ""),
        "fused group norm off (torch GroupNorm)": (base, True, "foreach", _flag(unet_module, "FUSED_GROUP_NORM", False),
                                                   False, ""),
        "channels_last off (NCHW)": (nchw, False, "foreach", None, False, ""),
        "SDPA math backend": (base, True, "foreach", lambda: sdpa_kernel(SDPBackend.MATH), False, ""),
        "Adam fused=True": (base, True, "fused", None, False, ""),
        "Adam for-loop (foreach=False)": (base, True, "for-loop", None, False, ""),
    }
    if device.type == "cpu":
        variants["bf16 autocast on CPU"] = (base, True, "foreach", lambda: torch.autocast("cpu", torch.bfloat16),
                                            False, "lower precision: not a like-for-like row")
    if with_compile:
        variants["torch.compile (inductor)"] = (base, True, "foreach", default_ctx, True, "")
    steps, rows = {}, {}
    for label, (net, cl, opt, ctx, compiled, note) in variants.items():
        net = copy.deepcopy(net).to(device)
        steps[label] = (train_step(net, cfg, device, cl, opt, ctx, compiled), cfg.train.batch_size)
        rows[label] = Contender(label, net.num_parameters(), 0, note=note)
    if with_compile:
        t0 = time.perf_counter()
        steps["torch.compile (inductor)"][0]()  # compile outside the timed rounds, and say what it cost
        rows["torch.compile (inductor)"].note = (f"first step (compile) {time.perf_counter() - t0:.0f} s, not in "
                                                 "the rate; inductor's on-disk cache shortens it after a first run")
    for label, timing in alternate(steps, rounds, device).items():
        rows[label].timing = timing
    return rows



KERNELS = ("convolution", "convolution_backward", "_scaled_dot_product_flash_attention_for_cpu",
           "_scaled_dot_product_flash_attention_for_cpu_backward", "mm", "addmm", "bmm")


class _Recorder(TorchDispatchMode):
    """Records every convolution, attention and matmul call (forward and backward) with its arguments."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.overloadpacket.__name__ in KERNELS:  # own copies (same strides), unaffected by later steps
            copy_ = lambda t: t.detach().clone() if isinstance(t, torch.Tensor) else t  # noqa: E731
            self.calls.append((func, tree_map(copy_, args), tree_map(copy_, kwargs or {})))
        return out


def kernel_floor(cfg: RunConfig, device: torch.device, rounds: int) -> dict[str, Timing]:
    """Each network's full step against a replay of only its convolution, attention and matmul kernels
    (same calls, same arguments, captured from one step). The replay is the floor of any implementation
    of the same architecture on these kernels: it bounds the possible speed-up over the peer."""
    torch.manual_seed(0)
    contenders = {}
    ours = UNet(cfg.model, cfg.data.image_size).place(device)
    for name, net, cl in (("ours", ours, ours.channels_last),
                          ("diffusers", peer_unet(cfg, channels_last=False).to(device), False)):
        step = train_step(net, cfg, device, cl)
        step()
        with _Recorder() as recorder:
            step()

        def replay(calls=recorder.calls):
            with torch.no_grad():
                for func, args, kwargs in calls:
                    func(*args, **kwargs)

        contenders[f"{name}: full step"] = (step, cfg.train.batch_size)
        contenders[f"{name}: its conv + attention + matmul kernels only"] = (replay, cfg.train.batch_size)
    return alternate(contenders, rounds, device)
