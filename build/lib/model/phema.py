"""Post-hoc EMA (Karras et al., CVPR 2024, "Analyzing and Improving the Training Dynamics of Diffusion Models",
EDM2, sec. 3.1 and App. C.1-C.2): track two power-function EMA profiles, snapshot them, and afterwards rebuild
the EMA of any length as a linear combination of the snapshots, so an EMA-length sweep costs one training run.

Power-function EMA with exponent e (EDM2 eq. 2, our discrete form): after update t = 1, 2, ...
    theta_hat_t = beta_t theta_hat_{t-1} + (1 - beta_t) theta_t,   beta_t = (1 - 1/t)^(e + 1)
which makes theta_hat_t an exact weighted sum of the weights theta_1..theta_t after each optimiser step:
    theta_hat_t = sum_tau w_t(tau) theta_tau,   w_t(tau) = (tau / t)^(e + 1) - ((tau - 1) / t)^(e + 1)
(beta_1 = 0, so the initial value never counts; the product of betas telescopes). Its length is given as the
relative standard deviation of the continuous profile p(tau) ~ tau^e on [0, t], in units of t (EDM2 eq. 3):
    sigma_rel^2 = (e + 1) / ((e + 2)^2 (e + 3))      (e = 16.97 for sigma_rel 0.05, e = 6.94 for 0.10)
Reconstruction (EDM2 App. C.2, here in the discrete weights, which are exact for the tracked averages): with
snapshots i taken at update t_i of a profile with exponent e_i, find the coefficients x that minimise
    sum_tau (w_target(tau) - sum_i x_i w_{t_i, e_i}(tau))^2
(least squares over the updates tau = 1..max t_i), then theta_hat_target = sum_i x_i theta_hat_i. The result is
exact when the target profile lies in the snapshots' span (e.g. snapshots at every update), and otherwise the
best fit of the profile, as in EDM2.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import torch

from .atomicio import atomic_write_bytes
from .errors import CheckpointError, ConfigError

FORMAT = "palette-bench-phema/1"
_NAME = re.compile(r"^phema-(\d{10})\.pt$")


def std_to_exp(sigma_rel: float) -> float:
    """The power-function exponent e of relative length sigma_rel (the largest root of EDM2 eq. 3 as a cubic:
    e^3 + 7 e^2 + (16 - 1/s^2) e + (12 - 1/s^2) = 0). Raises ConfigError outside (0, sqrt(1/12))."""
    if not 0.0 < sigma_rel < math.sqrt(1 / 12):
        raise ConfigError(f"post-hoc EMA length sigma_rel (train.phema_stds, --phema-std) = {sigma_rel} must lie in "
                          f"(0, {math.sqrt(1 / 12):.4f})")
    s2 = sigma_rel**-2
    roots = np.roots([1.0, 7.0, 16.0 - s2, 12.0 - s2])
    return float(roots[np.abs(roots.imag) < 1e-9].real.max())


def exp_to_std(exponent: float) -> float:
    """sigma_rel of the power-function profile with exponent e (EDM2 eq. 3)."""
    e = float(exponent)
    return math.sqrt((e + 1) / ((e + 2) ** 2 * (e + 3)))


def profile(t: int, exponent: float, length: int | None = None) -> np.ndarray:
    """w_t(tau) for tau = 1..length (default t): the weight of the weights after update tau in the power EMA
    tracked for t updates; float64 [length], zero after t, summing to 1."""
    length = t if length is None else length
    tau = np.arange(1, length + 1, dtype=np.float64)
    e1 = float(exponent) + 1.0
    w = (np.minimum(tau, t) / t) ** e1 - (np.minimum(tau - 1, t) / t) ** e1
    return w


def solve_coefficients(steps: list[int], exponents: list[float], target_step: int, target_exponent: float
                       ) -> tuple[np.ndarray, float]:
    """Least-squares coefficients x [n] of the snapshots (update counts `steps`, profile `exponents`, both [n])
    whose combination best matches the power EMA of `target_exponent` at `target_step`; -> (x, the residual's
    L2 norm, 0 for an exact reconstruction; the target's own norm is about sqrt((e + 1)^2 / ((2e + 1) t)))."""
    length = max(max(steps), target_step)
    basis = np.stack([profile(t, e, length) for t, e in zip(steps, exponents, strict=True)], axis=1)  # [length, n]
    target = profile(target_step, target_exponent, length)
    x, *_ = np.linalg.lstsq(basis, target, rcond=None)
    return x, float(np.linalg.norm(basis @ x - target))


class PowerEMA:
    """Power-function EMA profiles of a network's state (parameters and floating buffers), one per sigma_rel.

    `update(net)` after every optimiser step; `state_dict()` / `load_state_dict()` for checkpoints (plain
    tensors, `weights_only=True` loadable); `snapshot(folder, images_seen)` writes `phema-<update>.pt`."""

    def __init__(self, net: torch.nn.Module, stds: list[float]):
        self.stds = [float(s) for s in stds]
        self.exponents = [std_to_exp(s) for s in self.stds]
        self.updates = 0
        self.profiles = [{k: v.detach().clone() for k, v in net.state_dict().items()} for _ in self.stds]

    @torch.no_grad()
    def update(self, net: torch.nn.Module) -> None:
        self.updates += 1
        state = net.state_dict()
        for e, prof in zip(self.exponents, self.profiles, strict=True):
            beta = (1.0 - 1.0 / self.updates) ** (e + 1.0)
            floats = [k for k, v in prof.items() if v.is_floating_point()]
            torch._foreach_lerp_([prof[k] for k in floats], [state[k].detach() for k in floats], 1.0 - beta)
            for k, v in prof.items():
                if not v.is_floating_point():
                    v.copy_(state[k])

    def state_dict(self) -> dict:
        return {"stds": list(self.stds), "updates": self.updates, "profiles": self.profiles}

    def load_state_dict(self, state: dict) -> None:
        if [float(s) for s in state["stds"]] != self.stds:
            raise CheckpointError(f"post-hoc EMA state tracks sigma_rel {state['stds']}, this run {self.stds}")
        self.updates = int(state["updates"])
        for mine, theirs in zip(self.profiles, state["profiles"], strict=True):
            for k, v in mine.items():
                v.copy_(theirs[k])

    def snapshot(self, folder: Path, images_seen: int) -> Path:
        """Write the profiles as they are now to `folder/phema-<updates>.pt`, atomically."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"phema-{self.updates:010d}.pt"
        payload = {"format": FORMAT, "step": self.updates, "images_seen": int(images_seen), "stds": self.stds,
                   "exponents": self.exponents, "profiles": self.profiles}
        atomic_write_bytes(path, lambda f: torch.save(payload, f))
        return path


def list_snapshots(folder: Path) -> list[Path]:
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if _NAME.match(p.name)) if folder.is_dir() else []


def _load(path: Path) -> dict:
    try:
        snap = torch.load(path, map_location="cpu", weights_only=True, mmap=True)  # read lazily, as summed
    except Exception as e:  # noqa: BLE001 - any unreadable file is one clear line naming it
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: not a readable post-hoc EMA snapshot ({first})") from None
    if not isinstance(snap, dict) or snap.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a post-hoc EMA snapshot (expected format '{FORMAT}')")
    return snap


def reconstruct(folder: Path, sigma_rel: float, step: int | None = None) -> tuple[dict, dict]:
    """The EMA of relative length `sigma_rel` at update `step` (default: the newest snapshot's), rebuilt from the
    snapshots in `folder`; -> (a state dict for the network, float32 on the CPU; info: step, images_seen,
    coefficients, residual, relative residual). Raises CheckpointError when there are no snapshots."""
    paths = list_snapshots(folder)
    if not paths:
        raise CheckpointError(f"{folder}: no post-hoc EMA snapshots (train with train.phema_stds set)")
    heads = [_load(p) for p in paths]
    steps = [h["step"] for h in heads for _ in h["exponents"]]
    exps = [float(e) for h in heads for e in h["exponents"]]
    step = heads[-1]["step"] if step is None else int(step)
    target_exp = std_to_exp(sigma_rel)
    x, residual = solve_coefficients(steps, exps, step, target_exp)
    out: dict[str, torch.Tensor] = {}
    i = 0
    for h in heads:
        for prof in h["profiles"]:
            for k, v in prof.items():
                if not v.is_floating_point():
                    out[k] = v.clone()
                    continue
                acc = out.get(k)
                term = v.double() * float(x[i])
                out[k] = term if acc is None else acc + term
            i += 1
    out = {k: v.float() if v.is_floating_point() else v for k, v in out.items()}
    norm = float(np.linalg.norm(profile(step, target_exp)))
    images = next((h["images_seen"] for h in heads if h["step"] == step), None)
    return out, {"step": step, "images_seen": images, "sigma_rel": sigma_rel, "coefficients": x.tolist(),
                 "residual": residual, "relative_residual": residual / norm}
