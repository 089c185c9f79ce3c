"""One validated configuration for one training run: data, task, network, diffusion, training, evaluation.

Constructor arguments are the config (nanoGPT's GPTConfig): every field below is read by exactly one
module, and unknown keys are refused. A run writes its resolved config as JSON next to its checkpoints.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Strict):
    """Where the images come from (read by model/data)."""

    source: Literal["folder", "places2", "faces", "landscapes", "synthetic-faces", "synthetic-landscapes"] = (
        "faces"
    )
    path: str | None = None  # folder / places2 root; for faces/landscapes: use this folder instead of Debian's
    categories: list[str] = Field(default_factory=lambda: ["forest", "mountain"])  # places2 only
    image_size: int = Field(32, ge=8, le=1024)
    test_fraction: float = Field(0.1, gt=0.0, lt=1.0)  # share of files hashed into the test split
    max_images: int | None = Field(None, ge=1)  # cap per split, after the deterministic split
    synthetic_count: int = Field(256, ge=4)  # images made by the synthetic-* generators (train + test)
    crops_per_image: int = Field(3, ge=1, le=16)  # deterministic crops per landscape photo
    cache_dir: str | None = None  # decoded-image cache; None: $PALETTE_BENCH_CACHE or ~/.cache/palette-bench

    @model_validator(mode="after")
    def _needs_path(self):
        if self.source in ("folder", "places2") and not self.path:
            raise ValueError(f"data.path is required for source '{self.source}'")
        return self


class TaskConfig(_Strict):
    """What is hidden from the network and must be generated (read by model/tasks)."""

    name: Literal["inpainting", "colorization", "uncropping"] = "inpainting"
    mask: Literal["paper", "center", "free_form", "irregular", "bbox"] = "paper"  # inpainting only
    uncrop: Literal["left", "right", "top", "bottom", "border", "random"] = "random"  # uncropping only


class UNetConfig(_Strict):
    """Palette / guided-diffusion UNet (read by model/unet.py)."""

    base_channels: int = Field(64, ge=8)
    channel_mults: list[int] = Field(default_factory=lambda: [1, 2, 2])
    num_res_blocks: int = Field(2, ge=1)
    attn_resolutions: list[int] = Field(default_factory=lambda: [16, 8])
    head_channels: int = Field(32, ge=8)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    norm_groups: int = Field(32, ge=1)
    # Memory format of weights and activations. 'auto': channels_last on the CPU (oneDNN: x1.04, bench perf),
    # NCHW on CUDA (cuDNN, bf16: NCHW x1.20-1.27 on an H100, results/gpu/). See model.unet.use_channels_last.
    channels_last: bool | Literal["auto"] = "auto"

    @model_validator(mode="after")
    def _groups_divide(self):
        for m in self.channel_mults:
            if m < 1:
                raise ValueError("model.channel_mults must be positive integers")
            if (self.base_channels * m) % self.norm_groups:
                raise ValueError(
                    f"model.norm_groups={self.norm_groups} must divide every level's channels "
                    f"(base_channels*mult={self.base_channels * m})"
                )
        return self


class DiffusionConfig(_Strict):
    """Noise schedule and training objective (read by model/schedule.py and model/objective.py)."""

    schedule: Literal["linear", "cosine", "quadratic"] = "linear"
    timesteps: int = Field(2000, ge=1, le=100_000)
    beta_start: float = Field(1e-6, gt=0.0, lt=1.0)
    beta_end: float = Field(0.01, gt=0.0, lt=1.0)
    betas: list[float] | None = None  # explicit betas; overrides schedule/timesteps/beta range
    # The paper's "2000 -> 1200 steps with more noise per step": rescale this schedule's betas so that
    # alpha_bar_T equals that of the same schedule with `match_terminal` steps.
    match_terminal: int | None = Field(None, ge=1)
    loss: Literal["l1", "l2"] = "l2"
    # What the network is trained to output (model/prediction.py): eps is Palette's and the paper's; x0 and v
    # learn far faster at small budgets (shared/FACTS.md, ablations/prediction.yaml).
    prediction: Literal["eps", "v", "x0"] = "eps"
    # Min-SNR-gamma loss weighting (Hang et al., ICCV 2023, "Efficient Diffusion Training via Min-SNR Weighting
    # Strategy", eq. 8-10; model/weighting.py): each image's loss times min(SNR, k)/SNR for eps, min(SNR, k) for
    # x0, min(SNR, k)/(SNR + 1) for v, SNR = gamma / (1 - gamma), k = min_snr_gamma (the paper's 5). "none":
    # Palette's unweighted mean over the batch's unknown pixels; "min_snr" averages per image, then weights.
    # "p2": P2 weighting (Choi et al., CVPR 2022, "Perception Prioritized Training of Diffusion Models", eq. 8):
    # the eps-error times 1 / (p2_k + SNR)^p2_gamma (the paper's k = 1, gamma = 1), per image as min_snr.
    loss_weighting: Literal["none", "min_snr", "p2"] = "none"
    min_snr_gamma: float = Field(5.0, gt=0.0)
    p2_k: float = Field(1.0, gt=0.0)
    p2_gamma: float = Field(1.0, ge=0.0)
    # Noise levels drawn in training (model/noise_levels.py); the last two truncated to [gamma_T, gamma_1]:
    # uniform: Palette's t ~ U{1..T}, gamma ~ U(gammas[t], gammas[t-1]);
    # log_normal: EDM's ln(sigma) ~ N(log_normal_mean, log_normal_std^2), sigma^2 = (1 - gamma) / gamma
    #   (Karras et al., NeurIPS 2022, Table 1 "Training": P_mean -1.2, P_std 1.2);
    # laplace: log-SNR ~ Laplace(laplace_mu, laplace_b) (Hang et al. 2024, "Improved Noise Schedule for Diffusion
    #   Training", arXiv 2407.03297, sec. 3: mu 0, b 0.5).
    noise_levels: Literal["uniform", "log_normal", "laplace"] = "uniform"
    log_normal_mean: float = -1.2
    log_normal_std: float = Field(1.2, gt=0.0)
    laplace_mu: float = 0.0
    laplace_b: float = Field(0.5, gt=0.0)

    @model_validator(mode="after")
    def _check(self):
        if self.betas is not None:
            if not self.betas or any(not 0.0 < b < 1.0 for b in self.betas):
                raise ValueError("diffusion.betas must be a non-empty list of numbers in (0, 1)")
        if self.beta_end < self.beta_start:
            raise ValueError("diffusion.beta_end must be >= diffusion.beta_start")
        return self


class TrainConfig(_Strict):
    """Algorithm 2 (incremental learning) and the optimiser (read by model/trainer.py)."""

    batch_size: int = Field(16, ge=1)
    lr: float = Field(1e-4, gt=0.0)
    warmup_images: int = Field(2000, ge=0)  # linear LR warm-up, counted in images seen (edm)
    weight_decay: float = Field(0.0, ge=0.0)
    ema_decay: float = Field(0.9999, ge=0.0, lt=1.0)
    # decay_n = min(ema_decay, (1 + n) / (10 + n)) after n updates: without it a 0.9999 EMA of a short
    # CPU run would stay at the random initialisation.
    ema_warmup: bool = True
    subsets: int = Field(1, ge=1)  # N: 1 = batch learning
    epochs_per_subset: int = Field(1, ge=1)  # E
    epochs: int | None = Field(None, ge=1)  # overrides N*E; subsets then cycle
    seed: int = 0
    checkpoint_every_steps: int | None = Field(None, ge=1)  # mid-epoch checkpoints (plus every epoch end)
    # 0: a checkpoint at every epoch end. > 0: an epoch end writes one only when this many minutes have passed
    # since the session's last; evaluation epochs, the last epoch and a session's end always write one. For
    # tiny epochs (the cpu scale: 2-5 steps in 1-2 s, then a 30 MB checkpoint in ~0.1 s).
    # Bookkeeping: not part of a run's identity (model.config.run_identity), as it cannot change the weights.
    checkpoint_minutes: float = Field(0.0, ge=0.0)
    keep_checkpoints: int = Field(2, ge=1)
    grad_clip: float | None = Field(1.0, gt=0.0)
    # Random horizontal flips of each training pair (target and condition alike), as edm and guided-diffusion
    # do: twice the distinct images for a small data set. Drawn from the trainer's generator (resumable).
    hflip: bool = False
    compile: bool = False  # torch.compile the network
    # Processes that train this one run together (DistributedDataParallel, model/distributed.py): each takes
    # its slice of every global batch of batch_size images. Not bitwise the 1-process run (a stream per rank).
    processes: int = Field(1, ge=1)
    # Post-hoc EMA (Karras et al., CVPR 2024, "Analyzing and Improving the Training Dynamics of Diffusion
    # Models", sec. 3.1 and App. C.1-C.2; model/phema.py): power-function EMA profiles of these relative
    # standard deviations (sigma_rel, each in (0, 0.288)) are tracked beside train.ema_decay's EMA and
    # snapshotted into <run>/phema/ every phema_snapshot_every images (and at the last step), so any other
    # sigma_rel can be reconstructed after training (`bench evaluate RUN --phema-std 0.07`). [] = off.
    phema_stds: list[float] = Field(default_factory=list)
    phema_snapshot_every: int = Field(2000, ge=1)  # images seen between snapshots

    @model_validator(mode="after")
    def _check_phema(self):
        for s in self.phema_stds:
            if not 0.0 < s < 0.2886:  # sigma_rel(exponent 0) = sqrt(1/12): no longer EMA has a power profile
                raise ValueError(f"train.phema_stds: {s} must lie in (0, 0.2886) (a relative EMA length)")
        if len(set(self.phema_stds)) != len(self.phema_stds):
            raise ValueError(f"train.phema_stds: {self.phema_stds} lists a value twice")
        return self

    @property
    def total_epochs(self) -> int:
        return self.epochs if self.epochs is not None else self.subsets * self.epochs_per_subset


class EvalConfig(_Strict):
    """Evaluation during and after training (read by model/evaluate.py)."""

    every_epochs: int = Field(0, ge=0)  # 0: only after the last epoch
    n_samples: int = Field(64, ge=2)
    sampler: Literal["ddim", "ddpm"] = "ddim"
    steps: int = Field(50, ge=1)  # DDIM steps (DDPM uses all T)
    eta: float = Field(0.0, ge=0.0, le=1.0)
    batch_size: int = Field(64, ge=1)
    seed: int = 1234
    metrics: list[Literal["fid", "kid", "l1", "psnr", "ssim"]] = Field(
        default_factory=lambda: ["fid", "kid", "l1", "psnr", "ssim"]
    )
    save_images: int = Field(8, ge=0)  # triplets written as PNG
    # Also score L1 / PSNR / SSIM on the mean of this many samples per input (keys l1_mmse, psnr_mmse, ssim_mmse;
    # FID and KID stay on the first sample): the Monte Carlo posterior mean, the MMSE estimate. A sample from
    # a perfect model has twice the posterior variance as expected squared error, the posterior mean once, so on
    # ambiguous tasks (colorization) single samples can lose PSNR to a gray copy that the mean beats (Whang et
    # al., CVPR 2022, "Deblurring via Stochastic Refinement"). 1: off. Costs this many times the sampling;
    # sample_seconds_per_image still times the first draw only.
    mmse_samples: int = Field(1, ge=1)
    # At the final evaluation, also time a full T-step DDPM chain on this many samples (0: skip); the
    # timesteps ablation needs the sampling cost of T even when quality is measured with DDIM.
    ddpm_timing_samples: int = Field(0, ge=0)
    # The held-out loss (model/heldout.py: L_simple at this many fixed noise levels on the evaluation's n_samples
    # images): recorded as `val_loss` at every evaluation when > 0 (0: off). Cheap (no sampling, no Inception).
    loss_levels: int = Field(0, ge=0)
    # Also the held-out loss alone (no sampling) every this many epochs (0: only at the evaluations): a learning
    # curve for a fraction of the sample-based evaluations' cost. Needs loss_levels > 0.
    loss_every_epochs: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _loss_needs_levels(self):
        if self.loss_every_epochs and not self.loss_levels:
            raise ValueError(f"eval.loss_every_epochs={self.loss_every_epochs} needs eval.loss_levels > 0 "
                             "(the held-out loss is off)")
        return self

    def sampled(self, epoch: int, total_epochs: int) -> bool:
        """Whether the evaluation after `epoch` (1-based) samples and scores (KID, PSNR, ...): the last epoch and
        each every_epochs."""
        return epoch == total_epochs or (self.every_epochs > 0 and epoch % self.every_epochs == 0)

    def due(self, epoch: int, total_epochs: int) -> bool:
        """Whether the trainer calls the evaluator after `epoch`: a sampled evaluation, or each loss_every_epochs."""
        return self.sampled(epoch, total_epochs) or (self.loss_every_epochs > 0 and epoch % self.loss_every_epochs == 0)

    def loss_only(self, epoch: int, total_epochs: int) -> bool:
        """Whether the evaluation after `epoch` is due to loss_every_epochs alone: the held-out loss, no sampling."""
        return self.due(epoch, total_epochs) and not self.sampled(epoch, total_epochs)


class RunConfig(_Strict):
    data: DataConfig = Field(default_factory=DataConfig)
    task: TaskConfig = Field(default_factory=TaskConfig)
    model: UNetConfig = Field(default_factory=UNetConfig)
    diffusion: DiffusionConfig = Field(default_factory=DiffusionConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)

    @model_validator(mode="after")
    def _size_divides(self):
        down = 2 ** (len(self.model.channel_mults) - 1)
        if self.data.image_size % down:
            raise ValueError(
                f"data.image_size={self.data.image_size} must be divisible by {down} "
                f"(2 ** (len(model.channel_mults) - 1))"
            )
        sizes = [self.data.image_size // 2**i for i in range(len(self.model.channel_mults))]
        for r in self.model.attn_resolutions:
            if r not in sizes:
                raise ValueError(
                    f"model.attn_resolutions: {r} is not a feature-map size of this UNet at "
                    f"data.image_size={self.data.image_size} (sizes: {', '.join(map(str, sizes))})"
                )
        return self


# Keys added after run folders existed, with the value that gives the old behaviour. A run's identity leaves
# them out while they hold that value, so run folders, checkpoints and run keys written before the key was
# added stay valid (resumable, and found again by `bench run`).
LATER_KEYS_AT_OLD_BEHAVIOUR: dict[tuple[str, str], object] = {
    ("train", "processes"): 1, ("eval", "mmse_samples"): 1,
    ("diffusion", "loss_weighting"): "none", ("diffusion", "min_snr_gamma"): 5.0,
    ("diffusion", "p2_k"): 1.0, ("diffusion", "p2_gamma"): 1.0,
    ("diffusion", "noise_levels"): "uniform", ("diffusion", "log_normal_mean"): -1.2,
    ("diffusion", "log_normal_std"): 1.2, ("diffusion", "laplace_mu"): 0.0, ("diffusion", "laplace_b"): 0.5,
    ("train", "phema_stds"): [], ("train", "phema_snapshot_every"): 2000,
    ("eval", "loss_levels"): 0, ("eval", "loss_every_epochs"): 0,
}
# Keys that decide when state is written, never what is learned: never part of a run's identity, so a run can be
# resumed, or found again by `bench run`, with another value.
BOOKKEEPING_KEYS: set[tuple[str, str]] = {("train", "checkpoint_minutes")}


def run_identity(cfg: RunConfig | dict | str) -> dict:
    """The JSON-able config that decides a run's weights: `cfg` (a RunConfig, its dict or its JSON) with the
    later keys at their old behaviour and the bookkeeping keys left out. Raises pydantic.ValidationError on a
    config that is not valid."""
    if isinstance(cfg, str):
        cfg = RunConfig.model_validate_json(cfg)
    elif isinstance(cfg, dict):
        cfg = RunConfig.model_validate(cfg)
    d = cfg.model_dump(mode="json")
    for (section, key), old in LATER_KEYS_AT_OLD_BEHAVIOUR.items():
        if d[section].get(key) == old:
            del d[section][key]
    for section, key in BOOKKEEPING_KEYS:
        d[section].pop(key, None)
    return d
