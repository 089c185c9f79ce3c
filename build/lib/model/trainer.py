"""The training loop: Algorithm 2 (incremental learning) in resumable sessions, read top to bottom.

A run lives in one folder: `config.json`, `checkpoints/ckpt-*.pt` and `history.json`. Calling `train`
again on the same folder resumes from the newest checkpoint and reaches bitwise the same weights as an
uninterrupted run on the CPU (every RNG state and the position in the data order are checkpointed).
Under torchrun (train.processes = K) the same loop runs on K ranks with DDP; model/distributed.py says how.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import distributed, incremental
from .atomicio import atomic_write_bytes, remove_stale_temporaries, write_json
from .checkpoint import (
    list_checkpoints,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from .config import RunConfig, run_identity
from .data import load_split
from .device import autocast_context, resolve_device
from .ema import make_ema
from .errors import CheckpointError, ConfigError, DataError, TrainingDiverged
from .faults import fault, poison
from .noise_levels import gamma_sampler
from .objective import palette_loss
from .optim import make_optimizer, make_warmup
from .phema import PowerEMA
from .schedule import schedule_from_config
from .tasks import make_task
from .unet import UNet


@dataclass
class Budget:
    """How much one session may do before it saves and stops (the paper's Colab sessions)."""

    minutes: float | None = None
    epochs: int | None = None


@dataclass
class TrainResult:
    status: str  # "done" or "paused" (session budget reached; call train() again to resume)
    history: list[dict]
    num_parameters: int
    checkpoint: Path | None
    resumed_from: Path | None = None
    extra: dict = field(default_factory=dict)


def images_to_tensor(images_uint8, device) -> torch.Tensor:
    """uint8 NHWC (numpy or tensor) -> float NCHW in [-1, 1] on `device`."""
    x = torch.as_tensor(images_uint8).to(device, non_blocking=True)
    return x.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


def build_network(cfg: RunConfig) -> UNet:
    return UNet(cfg.model, image_size=cfg.data.image_size)


def same_run_config(stored_json: str, cfg: RunConfig) -> bool:
    """Whether a run folder's or checkpoint's stored config is this run's (keys added since, at their old
    behaviour, do not count: model.config.run_identity)."""
    try:
        return run_identity(stored_json) == run_identity(cfg)
    except ValueError:  # pydantic's ValidationError and JSON errors: a config of another version
        return False


def check_architecture(ckpt: dict, path: Path, cfg: RunConfig) -> None:
    """A transfer source must have this run's architecture (dropout may differ: the paper raises it) and
    prediction target (the same weights read as eps or as x0 mean different images)."""
    source_cfg = json.loads(ckpt["config"])
    source = source_cfg["model"]
    ignore = {"dropout", "channels_last"}
    diff = [f"model.{k}: {source.get(k)!r} != {v!r}"
            for k, v in cfg.model.model_dump(exclude=ignore).items() if source.get(k) != v]
    if diff:
        raise CheckpointError(f"{path}: transfer source has another architecture ({'; '.join(diff)})")
    theirs = source_cfg.get("diffusion", {}).get("prediction", "eps")  # checkpoints before the key: eps
    if theirs != cfg.diffusion.prediction:
        raise CheckpointError(f"{path}: transfer source predicts {theirs!r}, this run diffusion.prediction="
                              f"{cfg.diffusion.prediction!r}; transfer between prediction targets is refused")


def load_transfer_weights(path: Path, net: torch.nn.Module, ema, cfg: RunConfig) -> None:
    """Task/domain transfer: start from another run's network and EMA weights (the optimiser starts fresh)."""
    ckpt = load_checkpoint(path)
    check_architecture(ckpt, path, cfg)
    try:
        net.load_state_dict(ckpt["net"], strict=True)
        ema.load_state_dict(ckpt["ema"], strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: transfer weights do not fit this network ({str(e).splitlines()[0]})") from None


def newest_readable_checkpoint(directory: Path) -> tuple[Path | None, dict | None]:
    """The newest checkpoint that loads, and its contents, on the host. A damaged one (torn by a bad disk or
    copy, or tampered with) is set aside as `<name>.bad`, never picked up again, and the one before it is used.

    Always loaded to the CPU: the RNG states must be CPU byte tensors (torch.set_rng_state and
    Generator.set_state refuse CUDA ones), and load_state_dict copies the weights onto the network's device."""
    for path in reversed(list_checkpoints(directory)):
        try:
            return path, load_checkpoint(path, map_location="cpu")
        except CheckpointError as e:
            bad = path.with_name(path.name + ".bad")
            os.replace(path, bad)
            print(f"warning: {e}; set aside as {bad.name}, resuming from the checkpoint before it",
                  file=sys.stderr)
    return None, None


def train(
    cfg: RunConfig,
    run_dir: Path,
    device: str = "auto",
    init_from: Path | None = None,
    budget: Budget | None = None,
    evaluate_fn: Callable[[torch.nn.Module, int], dict] | None = None,  # (ema net, epoch) -> metrics
    on_step: Callable[[dict], None] | None = None,  # live progress (loss, img/s, ...)
    on_epoch_end: Callable[[dict, list[dict]], None] | None = None,  # (record, whole history)
) -> TrainResult:
    run_dir = Path(run_dir)
    group, device = distributed.join(resolve_device(device))  # torchrun's ranks, or this one process
    tc = cfg.train
    distributed.check_processes(tc.processes, group)
    budget = budget or Budget()
    session_start = time.perf_counter()

    # -- the run folder remembers its config: resuming with another config is refused
    run_dir.mkdir(parents=True, exist_ok=True)
    for folder in (run_dir, run_dir / "checkpoints", run_dir / "phema") if group.is_main else ():  # rank 0's
        remove_stale_temporaries(folder)  # what a killed session was writing
    config_json = cfg.model_dump_json(indent=2)
    config_path = run_dir / "config.json"
    if config_path.exists() and not same_run_config(config_path.read_text(), cfg):
        raise ConfigError(f"{config_path}: this run folder was started with another config; use a new folder")
    if not config_path.exists() and group.is_main:
        atomic_write_bytes(config_path, lambda f: f.write(config_json.encode()))

    # -- data, subsets (Algorithm 2), task, schedule, network, EMA, optimiser
    data = distributed.main_first(group, lambda: load_split(cfg.data, "train"))  # rank 0 fills the cache
    if tc.subsets > len(data.images):
        raise DataError(f"train.subsets={tc.subsets} is more than the {len(data.images)} training images "
                        f"of data.source '{cfg.data.source}'")
    subsets = incremental.split_subsets(len(data.images), tc.subsets, tc.seed)
    distributed.check_shards([len(s) for s in subsets], tc.batch_size, group)
    images = torch.from_numpy(data.images)  # uint8 NHWC stays on the host; one batch at a time moves
    task = make_task(cfg.task)
    schedule = schedule_from_config(cfg.diffusion)
    torch.manual_seed(tc.seed)  # network init and dropout
    net = build_network(cfg).place(device)
    ema = make_ema(net, tc.ema_decay, tc.ema_warmup)
    # Post-hoc EMA profiles (train.phema_stds; model/phema.py), kept by rank 0, which writes the snapshots.
    phema = PowerEMA(net, tc.phema_stds) if tc.phema_stds and group.is_main else None
    draw_gamma = gamma_sampler(cfg.diffusion, schedule)  # diffusion.noise_levels (model/noise_levels.py)
    per_image = cfg.diffusion.loss_weighting != "none"  # a weighted loss is a mean over images
    optimizer = make_optimizer(net, tc)
    scheduler = make_warmup(optimizer, tc)
    # Masks, gamma and noise are drawn where the batch lives: on the host they cost ~20 ms per 256-px batch
    # of 8 (two B x 3 x H x W normal draws and the masks, measured on a 2-core CPU), a large share of a GPU step.
    generator = torch.Generator(device).manual_seed(tc.seed)
    distributed.seed_ranks(generator, tc.seed, group)  # K ranks: one stream each (model/distributed.py)
    step_net = torch.compile(net) if tc.compile else net

    progress = {"epoch": 0, "step_in_epoch": 0, "steps": 0, "images_seen": 0, "train_seconds": 0.0,
                "epoch_loss_sum": 0.0, "epoch_seconds": 0.0, "pending_eval": None}
    history: list[dict] = []
    resumed_from, ckpt = distributed.main_first(group, lambda: newest_readable_checkpoint(run_dir / "checkpoints"))
    if resumed_from is not None:
        if not same_run_config(ckpt["config"], cfg):
            raise CheckpointError(f"{resumed_from}: checkpoint was written by another config")
        net.load_state_dict(ckpt["net"])
        ema.load_state_dict(ckpt["ema"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if phema is not None:
            if "phema" not in ckpt:
                raise CheckpointError(f"{resumed_from}: checkpoint has no post-hoc EMA state (train.phema_stds)")
            phema.load_state_dict(ckpt["phema"])
        reseed = distributed.rank_seed(tc.seed * 1_000_003 + ckpt["progress"]["steps"], group)
        if not set_rng_state(distributed.rank_rng(ckpt, group), generator, reseed=reseed):
            print(f"warning: {resumed_from.name} was written on another kind of device "
                  f"({ckpt['rng'].get('generator_device', 'cpu')}); the random stream of masks and noise restarts "
                  "from a new seed, so this run is valid but not bitwise the same as an uninterrupted one",
                  file=sys.stderr)
        progress.update(ckpt["progress"])
        history = list(ckpt["history"])
        if group.is_main:
            write_json(run_dir / "history.json", history)  # a kill may have come between checkpoint and history
    elif init_from is not None:
        load_transfer_weights(Path(init_from), net, ema, cfg)
    step_net = distributed.wrap(step_net, device, group)

    last_saved = time.perf_counter()  # a session starts from a checkpoint (or from nothing to lose)
    unsaved = False  # epochs finished since the last checkpoint (train.checkpoint_minutes)

    def checkpoint() -> Path | None:
        nonlocal last_saved, unsaved
        last_saved, unsaved = time.perf_counter(), False
        rngs = distributed.gather_rng(rng_state(generator), group)  # every rank's streams, on rank 0
        if not group.is_main:
            return None
        payload = {"config": config_json, "net": net.state_dict(), "ema": ema.state_dict(),
                   "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                   "rng": rngs[0], "progress": dict(progress), "history": history}
        if group.active:
            payload["rng_ranks"] = rngs
        if phema is not None:
            payload["phema"] = phema.state_dict()
        path = save_checkpoint(run_dir / "checkpoints", progress["steps"], payload, tc.keep_checkpoints)
        fault("checkpoint-saved")
        write_json(run_dir / "history.json", history)
        return path

    def run_pending_eval() -> None:
        # Evaluation runs after the epoch's checkpoint; if it is interrupted, the resumed run redoes it.
        epoch = progress["pending_eval"]
        if epoch is None:
            return
        if evaluate_fn is not None and group.is_main:
            ema.module.eval()
            rng = torch.get_rng_state()
            history[epoch - 1]["metrics"] = evaluate_fn(ema.module, epoch)
            torch.set_rng_state(rng)  # evaluation must not shift the training RNG
            fault("evaluate")
        progress["pending_eval"] = None
        checkpoint()
        if on_epoch_end is not None and group.is_main:
            on_epoch_end(history[epoch - 1], history)

    last_path = resumed_from
    run_pending_eval()
    total_epochs = tc.total_epochs
    epochs_this_session = 0
    while progress["epoch"] < total_epochs:
        if budget.epochs is not None and epochs_this_session >= budget.epochs:
            break
        if budget.minutes is not None and distributed.any_rank(
                (time.perf_counter() - session_start) / 60 >= budget.minutes, group):
            break
        epoch = progress["epoch"]
        subset = incremental.subset_of_epoch(epoch, tc.subsets, tc.epochs_per_subset)
        order = incremental.epoch_order(subsets[subset], tc.seed, epoch)
        batch_list = incremental.batches(order, tc.batch_size)
        # Process CPU time (all of torch's threads; a thread clock would miss its intra-op pool) of the epoch:
        # a busy machine stretches wall time, hardly this. A resumed epoch counts its resumed part only.
        cpu0 = time.process_time()
        net.train()
        for b in range(progress["step_in_epoch"], len(batch_list)):
            t0 = time.perf_counter()
            y0 = images_to_tensor(images[torch.from_numpy(distributed.shard(batch_list[b], group))], device)
            if tc.hflip:
                flip = torch.rand(len(y0), generator=generator, device=generator.device).to(y0.device) < 0.5
                y0 = torch.where(flip.view(-1, 1, 1, 1), y0.flip(-1), y0)
            if net.channels_last:
                y0 = y0.contiguous(memory_format=torch.channels_last)
            cond, mask = task.make(y0, [generator] * len(y0))
            with autocast_context(device):
                loss = poison("loss", palette_loss(step_net, y0, cond, mask, schedule, generator, cfg.diffusion.loss,
                                                   cfg.diffusion.prediction, draw_gamma, cfg.diffusion.loss_weighting,
                                                   cfg.diffusion.min_snr_gamma, cfg.diffusion.p2_k,
                                                   cfg.diffusion.p2_gamma))
            loss = distributed.scale_loss(loss, mask, group, per_image)  # this rank's share x K; 1 process: itself
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if tc.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(net.parameters(), tc.grad_clip, foreach=True)
            optimizer.step()
            scheduler.step()
            ema.update_parameters(net)
            if phema is not None:
                phema.update(net)
            # Read the loss once, at the end: a read-back before backward() would stall a GPU mid-step. A
            # non-finite loss has spoiled only these in-memory weights; the last checkpoint is untouched.
            loss_value = distributed.batch_loss(loss, group).item()  # the global batch's
            if not math.isfinite(loss_value):
                raise TrainingDiverged(f"loss became {loss_value} at epoch {epoch + 1}, step {b + 1}; "
                                       f"last good checkpoint kept in {run_dir / 'checkpoints'}")
            dt = time.perf_counter() - t0
            progress.update(step_in_epoch=b + 1, steps=progress["steps"] + 1,
                            images_seen=progress["images_seen"] + len(batch_list[b]),
                            train_seconds=progress["train_seconds"] + dt,
                            epoch_seconds=progress["epoch_seconds"] + dt,
                            epoch_loss_sum=progress["epoch_loss_sum"] + loss_value)
            # A snapshot each time images seen pass a multiple of train.phema_snapshot_every, and at the run's
            # last step (what a reconstruction at the end needs); a resumed run rewrites the same files.
            if phema is not None and (
                    progress["images_seen"] // tc.phema_snapshot_every
                    > (progress["images_seen"] - len(batch_list[b])) // tc.phema_snapshot_every
                    or (epoch + 1 == total_epochs and b + 1 == len(batch_list))):
                phema.snapshot(run_dir / "phema", progress["images_seen"])
            fault("train-step")
            if on_step is not None and group.is_main:
                on_step({"epoch": epoch + 1, "epochs": total_epochs, "subset": subset + 1,
                         "subsets": tc.subsets, "step": b + 1, "steps": len(batch_list), "loss": loss_value,
                         "images_per_second": len(batch_list[b]) / dt, "lr": scheduler.get_last_lr()[0]})
            if tc.checkpoint_every_steps and progress["steps"] % tc.checkpoint_every_steps == 0 \
                    and b + 1 < len(batch_list):
                last_path = checkpoint()

        epoch_cpu = time.process_time() - cpu0
        progress["train_cpu_seconds"] = progress.get("train_cpu_seconds", 0.0) + epoch_cpu  # .get: older checkpoints
        record = {"epoch": epoch + 1, "subset": subset + 1, "subset_size": len(order),
                  "steps": progress["steps"], "images_seen": progress["images_seen"],
                  "loss": progress["epoch_loss_sum"] / len(batch_list), "lr": scheduler.get_last_lr()[0],
                  "epoch_seconds": progress["epoch_seconds"], "train_seconds": progress["train_seconds"],
                  "epoch_cpu_seconds": epoch_cpu, "train_cpu_seconds": progress["train_cpu_seconds"],
                  "images_per_second": len(order) / max(progress["epoch_seconds"], 1e-9), "metrics": {}}
        history.append(record)
        due = cfg.eval.due(epoch + 1, total_epochs)
        progress.update(epoch=epoch + 1, step_in_epoch=0, epoch_loss_sum=0.0, epoch_seconds=0.0,
                        pending_eval=epoch + 1 if due else None)
        # `due` covers the last epoch; the clock is read on every rank alike (any_rank), as all join checkpoint()
        if due or not tc.checkpoint_minutes or distributed.any_rank(
                time.perf_counter() - last_saved >= 60 * tc.checkpoint_minutes, group):
            last_path = checkpoint()
        else:
            unsaved = True
        epochs_this_session += 1
        if due:
            run_pending_eval()
        elif on_epoch_end is not None and group.is_main:
            on_epoch_end(record, history)

    if unsaved:  # the session's budget ended it between checkpoints
        last_path = checkpoint()
    status = "done" if progress["epoch"] >= total_epochs else "paused"
    distributed.leave(group)
    return TrainResult(status=status, history=history, num_parameters=net.num_parameters(),
                       checkpoint=last_path, resumed_from=resumed_from)
