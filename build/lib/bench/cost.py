"""The work of one training run, counted from its config and its data size: what the dry run's estimate
(bench/dryrun.py) and the trial order (bench/runner.py:critical_path_order) weigh runs by.

Unit: one network forward pass on one image. Training an image costs about 3 of them: the forward pass, and a
backward pass of about twice its cost (the gradients with respect to both the activations and the weights).
"""

from __future__ import annotations

from model.config import DataConfig, RunConfig


def size_key(data: DataConfig) -> str:
    """The key of a data set in the preflight's sizes (bench/preflight.py): 'source:path@image_size'."""
    return f"{data.source}:{data.path or 'built-in'}@{data.image_size}"


def run_work(cfg: RunConfig, n_train: int) -> tuple[float, int]:
    """(images trained, network forward passes on one image each that its evaluations make) of one run on
    `n_train` training images.

    Images: N x E epochs over a 1/N subset each (Algorithm 2) see n_train x E images; with train.epochs set,
    n_train / N per epoch. Evaluations: each sampled one (EvalConfig.sampled) runs the sampler's steps (DDIM's
    eval.steps, or all diffusion.timesteps for DDPM), each held-out loss call (EvalConfig.due, when
    loss_levels > 0; model/heldout.py) one pass per noise level; both on eval.n_samples images."""
    train, ev = cfg.train, cfg.eval
    images = n_train * train.epochs_per_subset if train.epochs is None else n_train / train.subsets * train.epochs
    epochs = range(1, train.total_epochs + 1)
    sampled = sum(ev.sampled(e, train.total_epochs) for e in epochs)
    loss_calls = sum(ev.due(e, train.total_epochs) for e in epochs) if ev.loss_levels else 0
    steps = ev.steps if ev.sampler == "ddim" else cfg.diffusion.timesteps
    return images, (sampled * steps + loss_calls * ev.loss_levels) * ev.n_samples


def run_cost(cfg: RunConfig, n_train: int) -> float:
    """The relative cost of training and evaluating one run, in forward passes on one image: images trained x 3
    (forward + backward, see above) + the evaluations' forward passes (run_work)."""
    images, forwards = run_work(cfg, n_train)
    return images * 3 + forwards
