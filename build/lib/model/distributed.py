"""One run on K processes (DistributedDataParallel): the few collective steps model/trainer.py needs.

A process learns its rank from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT; env://).
Without it, or with WORLD_SIZE=1, every function here is the identity and no process group exists, so the
one-process trainer stays bitwise what it was.

With K ranks each global batch (train.batch_size images of the epoch order) is split into K interleaved
slices, rank r taking rows r, r+K, ... Each rank weights its loss by its share of the batch's unknown pixels
(of its images, for a per-image weighted loss) times K, so DDP's gradient average equals the gradient of the
one-process batch loss (up to float reduction order). Each rank draws its own rows' flips, masks, gamma, noise
and dropout from its own streams, seeded `seed * 1000 + rank`: a K-process run is reproducible and exactly
resumable for the same K, not bitwise the one-process run (same distribution).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist

from .errors import ConfigError

# Rank 0 evaluates (sampling, Inception features) while the others wait at the next collective: allow it hours.
TIMEOUT = timedelta(hours=3)


@dataclass(frozen=True)
class Group:
    """This process's place among the run's processes; `world` = 1 is the plain one-process run."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def join(device: torch.device) -> tuple[Group, torch.device]:
    """Join torchrun's process group (gloo on the CPU, nccl on CUDA); -> (group, this rank's device)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Group(), device
    group = Group(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", os.environ["RANK"])))
    if device.type == "cuda":
        device = torch.device("cuda", group.local_rank)
        torch.cuda.set_device(device)  # nccl and the evaluator's "cuda" both mean this rank's GPU
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=TIMEOUT)
    return group, device


def leave(group: Group) -> None:
    """Leave the process group together: a rank that tears gloo down while another still holds its connection
    can abort that rank ("terminate called without an active exception", seen in CI), so all meet first."""
    if group.active and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def check_processes(processes: int, group: Group) -> None:
    if processes != group.world:
        raise ConfigError(f"train.processes={processes} but {group.world} process(es) run this training; launch "
                          f"it with torchrun --nproc_per_node={processes} or set train.processes={group.world}")


def check_shards(subset_sizes: list[int], batch_size: int, group: Group) -> None:
    """Every global batch, the last of each epoch included, must give each rank at least one image."""
    for n in subset_sizes:
        smallest = min(batch_size, n % batch_size or batch_size)
        if smallest < group.world:
            raise ConfigError(f"train.batch_size={batch_size}: a subset of {n} images ends with a batch of "
                              f"{smallest}, fewer than the {group.world} processes (train.processes); choose a "
                              "batch size that leaves at least one image per process")


def main_first(group: Group, fn):
    """fn() on rank 0, then on the others (rank 0 sets damaged checkpoints aside and fills the data cache)."""
    if group.is_main:
        out = fn()
    if group.active:
        dist.barrier()
    return out if group.is_main else fn()


def shard(rows: np.ndarray, group: Group) -> np.ndarray:
    """This rank's rows of one global batch (interleaved: r, r+K, ...)."""
    return rows[group.rank::group.world] if group.active else rows


def seed_ranks(generator: torch.Generator, seed: int, group: Group) -> None:
    """Give each rank its own stream of flips/masks/noise (the trainer's generator) and of dropout (torch's)."""
    if group.active:
        generator.manual_seed(rank_seed(seed, group))
        torch.manual_seed(rank_seed(seed, group))


def rank_seed(seed: int, group: Group) -> int:
    return seed * 1000 + group.rank if group.active else seed


def wrap(net: torch.nn.Module, device: torch.device, group: Group) -> torch.nn.Module:
    """DDP: gradients are averaged across ranks during backward(); rank 0's weights are broadcast first."""
    if not group.active:
        return net
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(net, device_ids=ids)


def scale_loss(loss: torch.Tensor, mask: torch.Tensor, group: Group, per_image: bool = False) -> torch.Tensor:
    """loss x (this rank's unknown pixels / the global batch's) x K, so that DDP's mean of the ranks' gradients
    is the gradient of the one-process loss (a mean over the whole batch's unknown pixels).

    per_image: the loss is a mean over this rank's images instead (a weighted loss, model/weighting.py), so the
    share counts images (rows of `mask`), not pixels."""
    if not group.active:
        return loss
    mine = mask.new_tensor(float(len(mask))) if per_image else mask.float().sum()
    total = mine.detach().clone()
    dist.all_reduce(total)
    return loss * (mine * group.world / total.clamp(min=1))


def batch_loss(scaled: torch.Tensor, group: Group) -> torch.Tensor:
    """The global batch's loss from each rank's scaled loss; every rank gets the same value (so a NaN anywhere
    stops every rank at the same step)."""
    if not group.active:
        return scaled
    total = scaled.detach().float().clone()
    dist.all_reduce(total)
    return total / group.world


def any_rank(flag: bool, group: Group) -> bool:
    """True on every rank when it is true on one (a session budget in minutes: clocks differ per rank)."""
    if not group.active:
        return flag
    t = torch.tensor([int(flag)], device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def gather_rng(state: dict, group: Group) -> list[dict] | None:
    """Every rank's RNG state, in rank order, on rank 0 (None on the others); [state] on one process."""
    if not group.active:
        return [state]
    out = [None] * group.world if group.is_main else None
    dist.gather_object(state, out, dst=0)
    return out


def rank_rng(ckpt: dict, group: Group) -> dict:
    """This rank's RNG state from rank 0's checkpoint."""
    if not group.active:
        return ckpt["rng"]
    return ckpt["rng_ranks"][group.rank]
