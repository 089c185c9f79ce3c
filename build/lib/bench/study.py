"""Ablation files: load, validate at the edge, and expand into trials (points x seeds, with stage chains).

A study file (YAML):

    name: timesteps                  # optional; defaults to the file name
    description: one line
    base: {data: {source: faces}, diffusion.timesteps: 2000}    # nested or dotted keys
    scales: {smoke: {train.epochs: 2}, cpu: {...}}              # per-scale keys of this study
    stages:                          # optional chain; without it there is one stage, "main"
      face_inpaint: {task.name: inpainting}
      face_color: {task.name: colorization, transfer_source: face_inpaint}
    sweep:
      grid: {train.dropout: [0.0, 0.1]}                      # every combination
      zip: {diffusion.timesteps: [2000, 1200], diffusion.match_terminal: [null, 2000]}  # move together
      names: [T2000, T1200]          # optional: one name per point (sweep order) for the report's tables
      follows: [eval.every_epochs]   # optional: axes set by the others (settings, not ablation axes)
    seeds: [0, 1]
    baseline: {diffusion.timesteps: 2000}                   # the point speed-ups are measured against

Special axes: `stage` (which stage a trial trains; its upstream stages run first, shared between trials)
and `transfer_source` (`scratch` or a stage name: where the trained stage's weights start from).
Order of precedence: config defaults < scale preset < base < stage < scales[scale] < sweep point.

`sweep.follows` lists swept axes whose value only follows from the others (paper.yaml's `eval.every_epochs`,
set by N and E): they still set each trial's config, but the report leaves them out of config names and
ablation tables and optuna-dashboard does not show them as parameters. Without the key, the swept `eval.*`
axes follow (evaluation settings do not change what a config trains); `follows: []` makes every axis an
ablation axis. `sweep.names` names the points (unique within a stage); otherwise the report names a config by
the axes that vary within its stage (bench/report/labels.py).
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from model.config import RunConfig, run_identity
from model.errors import ConfigError

from . import yamlio
from .paper_claims import Claim, check_claims
from .presets import EPOCH_MULTIPLIER, SCALES

SPECIAL_AXES = ("stage", "transfer_source")
SCRATCH = "scratch"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class SweepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    grid: dict[str, list] = Field(default_factory=dict)
    zip: dict[str, list] = Field(default_factory=dict)
    names: list[str] = Field(default_factory=list)  # one per point, in sweep order (the report's names)
    follows: list[str] | None = None  # axes set by the others; None: the swept eval.* axes


class StudyFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    description: str = ""
    base: dict = Field(default_factory=dict)
    scales: dict[str, dict] = Field(default_factory=dict)
    stages: dict[str, dict] = Field(default_factory=dict)
    sweep: SweepSpec = Field(default_factory=SweepSpec)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    baseline: dict = Field(default_factory=dict)
    quality_metric: Literal["kid", "fid", "l1"] = "kid"  # what each Optuna trial reports (lower is better)
    claims: list[Claim] = Field(default_factory=list)  # the paper's statements as data (bench/paper_claims.py)


# eval keys that change neither the trained weights (evaluation restores the training RNG) nor the final
# evaluation's numbers: two studies that differ only here trained and scored the same run
NOT_TRAINING = (("eval", "every_epochs"), ("eval", "save_images"), ("eval", "ddpm_timing_samples"),
                ("eval", "loss_levels"), ("eval", "loss_every_epochs"))


@dataclass(frozen=True)
class StageRun:
    """One training run of one stage; shared by every trial whose chain contains the same run."""

    stage: str
    config: RunConfig
    transfer_source: str  # SCRATCH, the stage name it starts from, or a checkpoint file (*.pt)
    upstream: StageRun | None

    @property
    def key(self) -> str:
        """Content hash of everything that determines this run's weights (its config and its upstream)."""
        up = self.upstream.key if self.upstream else self.transfer_source
        blob = json.dumps({"config": run_identity(self.config), "from": up}, sort_keys=True)
        return f"{self.stage}-{hashlib.sha1(blob.encode()).hexdigest()[:12]}"

    @property
    def training_id(self) -> str:
        """What identifies the trained run across studies (`bench claims` counts a run two studies share once):
        a hash of its config (model.config.run_identity, seed included, without NOT_TRAINING) and of its
        upstream run's id (or its transfer source). `bench run` records it per trial in study.json, so a
        published folder keeps the identity of what it trained after a preset changes."""
        d = run_identity(self.config)
        for section, key in NOT_TRAINING:
            d[section].pop(key, None)
        up = self.upstream.training_id if self.upstream is not None else self.transfer_source
        return hashlib.sha1(json.dumps({"config": d, "from": up}, sort_keys=True).encode()).hexdigest()[:12]

    def chain(self) -> list[StageRun]:
        return (self.upstream.chain() if self.upstream else []) + [self]


@dataclass(frozen=True)
class Trial:
    point: dict  # axis -> value (JSON-able)
    seed: int
    label: str  # "a=1,b=2" (readable in optuna-dashboard)
    run: StageRun  # the stage this trial trains (its chain runs first)
    is_baseline: bool

    @property
    def key(self) -> str:
        blob = json.dumps({"point": self.point, "seed": self.seed}, sort_keys=True, default=str)
        return "t-" + hashlib.sha1(blob.encode()).hexdigest()[:12]


@dataclass
class Study:
    name: str
    path: Path
    scale: str
    spec: StudyFile
    trials: list[Trial] = field(default_factory=list)
    axes: list[str] = field(default_factory=list)
    overrides: dict = field(default_factory=dict)  # --set KEY=VALUE, recorded so reports can reproduce it
    seeds_override: list[int] | None = None  # --seeds, likewise
    follows: list[str] = field(default_factory=list)  # swept axes that only follow from others (sweep.follows)
    names: dict[str, str] = field(default_factory=dict)  # point label -> sweep.names' name


# ---------------------------------------------------------------- helpers for dotted keys and errors
def _set_dotted(tree: dict, key: str, value) -> None:
    parts = key.split(".")
    node = tree
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"'{key}': '{p}' is not a section")
    node[parts[-1]] = value


def _flatten(overrides: dict, prefix: str = "") -> dict:
    """Nested or dotted mapping -> {dotted key: value} (lists and scalars are leaves)."""
    flat = {}
    for k, v in (overrides or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and key.count(".") < 1 and k in RunConfig.model_fields:
            flat.update(_flatten(v, key + "."))
        else:
            flat[key] = v
    return flat


def _known_keys() -> list[str]:
    keys = []
    for section, info in RunConfig.model_fields.items():
        keys += [f"{section}.{k}" for k in info.annotation.model_fields]
    return keys


def _check_key(where: str, key: str, allow_special: bool = False) -> None:
    if allow_special and key in SPECIAL_AXES:
        return
    if key not in _known_keys():
        guess = difflib.get_close_matches(key, _known_keys() + list(SPECIAL_AXES), n=1, cutoff=0.6)
        hint = f" (did you mean '{guess[0]}'?)" if guess else ""
        raise ConfigError(f"{where}.{key}: unknown key{hint}")


def _validation_message(e: ValidationError) -> str:
    err = e.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    msg = err["msg"].replace("Value error, ", "")
    if err["type"] == "extra_forbidden":
        return f"{loc}: unknown key"
    value = err.get("input")
    shown = f" (got {value!r})" if not isinstance(value, dict) and value is not None else ""
    return f"{loc}: {msg}{shown}" if loc else msg


def resolve_config(layers: list[tuple[str, dict]]) -> RunConfig:
    """Apply dotted-key layers in order onto the defaults; raise ConfigError naming the layer and key."""
    tree: dict = {}
    for where, flat in layers:
        for key, value in flat.items():
            _check_key(where, key)
            _set_dotted(tree, key, value)
    try:
        return RunConfig.model_validate(tree)
    except ValidationError as e:
        raise ConfigError(_validation_message(e)) from None


# ---------------------------------------------------------------- loading and expansion
def parse_sets(items: list[str] | None) -> dict:
    """`--set key=value` (value parsed as YAML: numbers, lists, null) -> {dotted key: value}."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set data.path=/data/celeba")
        try:
            out[key.strip()] = yamlio.parse(value, f"--set {item!r}", "value")
        except yamlio.YamlTagError:
            raise ConfigError(f"--set {item!r}: YAML tags are not allowed in values") from None
        except yamlio.YamlReadError:
            raise ConfigError(f"--set {item!r}: value is not valid YAML") from None
    return out


def parse_seeds(text: str | None) -> list[int] | None:
    """`--seeds 0,1,2` -> [0, 1, 2] (None: the study file's own seeds)."""
    if text is None:
        return None
    try:
        seeds = [int(s) for s in text.split(",")]
    except ValueError:
        raise ConfigError(f"--seeds {text!r}: expected comma-separated integers, e.g. --seeds 0,1,2") from None
    if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds {text!r}: seeds must be distinct and not negative")
    return seeds


def load_study(path: str | Path, scale: str, overrides: dict | None = None, seeds: list[int] | None = None) -> Study:
    """Load and expand a study file; `overrides` ({dotted key: value}, from --set) apply after the file, and
    `seeds` (from --seeds) replaces its seeds."""
    path = Path(path)
    where = str(path)
    raw = yamlio.load(path, "study file")  # duplicate keys and YAML 1.1 traps refused, tags never run
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: a study file must be a mapping of keys (name, base, sweep, seeds, ...)")
    try:
        spec = StudyFile.model_validate(raw)
    except ValidationError as e:
        msg = _validation_message(e)
        if e.errors()[0]["type"] == "extra_forbidden":
            key = str(e.errors()[0]["loc"][-1])
            guess = difflib.get_close_matches(key, list(StudyFile.model_fields), n=1)
            msg += f" (did you mean '{guess[0]}'?)" if guess else ""
        raise ConfigError(f"{where}: {msg}") from None
    if scale not in SCALES:
        raise ConfigError(f"--scale {scale!r}: expected one of {', '.join(SCALES)}")
    if seeds is not None:
        spec = spec.model_copy(update={"seeds": list(seeds)})
    name = spec.name or path.stem
    if not _NAME.match(name):
        raise ConfigError(f"{where}: name {name!r}: use letters, digits, '_', '-' or '.', no path separators")
    try:
        study = Study(name=name, path=path, scale=scale, spec=spec, overrides=dict(overrides or {}),
                      seeds_override=None if seeds is None else list(seeds))
        return _expand(study, overrides or {})
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None


def _axes(spec: StudyFile) -> tuple[list[str], list[dict]]:
    """The sweep points: the zip block moves together, then the grid crosses everything."""
    for key in list(spec.sweep.grid) + list(spec.sweep.zip):
        _check_key("sweep", key, allow_special=True)
    for key, values in list(spec.sweep.grid.items()) + list(spec.sweep.zip.items()):
        if not values:
            raise ConfigError(f"sweep.{key}: needs at least one value")
    lengths = {len(v) for v in spec.sweep.zip.values()}
    if len(lengths) > 1:
        raise ConfigError(f"sweep.zip: all lists must have the same length (got {sorted(lengths)})")
    zipped = [dict(zip(spec.sweep.zip, vals, strict=True)) for vals in zip(*spec.sweep.zip.values(), strict=True)]
    zipped = zipped or [{}]
    grid_keys = list(spec.sweep.grid)
    points = []
    for combo in itertools.product(*spec.sweep.grid.values()):
        for z in zipped:
            points.append({**z, **dict(zip(grid_keys, combo, strict=True))})
    return list(spec.sweep.zip) + grid_keys, points


def _follows(spec: StudyFile, axes: list[str]) -> list[str]:
    """sweep.follows, checked against the swept axes (default: the swept eval.* axes)."""
    if spec.sweep.follows is None:
        return [a for a in axes if a.startswith("eval.")]
    for key in spec.sweep.follows:
        if key not in axes:
            raise ConfigError(f"sweep.follows: {key!r} is not a swept axis ({', '.join(axes) or 'none'})")
        if key in SPECIAL_AXES:
            raise ConfigError(f"sweep.follows: {key!r} cannot follow from other axes (it picks the stage or "
                              "the weights a trial starts from)")
    return list(spec.sweep.follows)


def _names(spec: StudyFile, points: list[dict], default_stage: str) -> dict[str, str]:
    """sweep.names as {point label: name}: one non-empty name per point, unique within a stage."""
    names = spec.sweep.names
    if not names:
        return {}
    if len(names) != len(points):
        raise ConfigError(f"sweep.names: {len(names)} names for {len(points)} sweep points (give one per point, "
                          "in sweep order)")
    seen = set()
    for name, point in zip(names, points, strict=True):
        stage = point.get("stage", default_stage)
        if not str(name).strip():
            raise ConfigError(f"sweep.names: an empty name (point {_label(point)})")
        if (stage, name) in seen:
            raise ConfigError(f"sweep.names: {name!r} names two points of stage {stage}")
        seen.add((stage, name))
    return {_label(p): str(n) for n, p in zip(names, points, strict=True)}


def _label(point: dict) -> str:
    return ",".join(f"{k.split('.')[-1]}={v}" for k, v in point.items()) or "base"


EPOCH_KEYS = ("train.epochs_per_subset", "train.epochs", "eval.every_epochs", "eval.loss_every_epochs")


def _scale_epochs(cfg: RunConfig, factor: float, keep: frozenset[str] = frozenset()) -> RunConfig:
    """Multiply the epoch counts (E, an explicit epoch total, the evaluation interval) by `factor`, rounded to
    whole epochs (at least 1; an interval of 0 stays 0), except the keys in `keep` (values the user wrote for
    this scale: `scales.<scale>` or `--set`)."""
    if factor == 1:
        return cfg
    t, e = cfg.train, cfg.eval

    def scaled(key: str, value):
        return value if key in keep or not value else max(1, round(value * factor))

    train = t.model_copy(update={"epochs_per_subset": scaled("train.epochs_per_subset", t.epochs_per_subset),
                                 "epochs": scaled("train.epochs", t.epochs)})
    evaluation = e.model_copy(update={"every_epochs": scaled("eval.every_epochs", e.every_epochs),
                                      "loss_every_epochs": scaled("eval.loss_every_epochs", e.loss_every_epochs)})
    return cfg.model_copy(update={"train": train, "eval": evaluation})


def _given_for_scale(layers: list[tuple[str, dict]], as_given: set[str]) -> frozenset[str]:
    """Epoch keys whose value comes last from a layer in `as_given` (so it is not multiplied)."""
    winner = {key: name for name, layer in layers for key in EPOCH_KEYS if key in layer}
    return frozenset(k for k, name in winner.items() if name in as_given)


def _scoped(flat: dict, stage: str, stages: dict, where: str) -> dict:
    """Keys that apply to `stage`: unscoped ones, and `<stage>.<key>` ones with the prefix removed."""
    out = {}
    for key, value in flat.items():
        head, _, rest = key.partition(".")
        if head in stages and head not in RunConfig.model_fields:
            if head == stage:
                out[rest] = value
        else:
            out[key] = value
    for key in out:
        _check_key(where, key)
    return out


def _expand(study: Study, overrides: dict) -> Study:
    spec, scale = study.spec, study.scale
    stages = spec.stages or {"main": {}}
    for st in stages:
        if not _NAME.match(st):
            raise ConfigError(f"stages.{st}: stage names use letters, digits, '_', '-' or '.'")
    scale_layer = _flatten(spec.scales.get(scale, {}))
    for s in spec.scales:
        if s not in SCALES:
            raise ConfigError(f"scales.{s}: unknown scale (expected {', '.join(SCALES)})")

    def stage_config(stage: str, point: dict, seed: int) -> tuple[RunConfig, str]:
        own = dict(_flatten(stages[stage]))
        source = own.pop("transfer_source", SCRATCH)
        sweep = {k: v for k, v in point.items() if k not in SPECIAL_AXES}
        layers = [("scale preset", SCALES[scale]), ("base", _scoped(_flatten(spec.base), stage, stages, "base")),
                  (f"stages.{stage}", own),
                  (f"scales.{scale}", _scoped(scale_layer, stage, stages, f"scales.{scale}")),
                  ("--set", _scoped(overrides, stage, stages, "--set")),
                  ("sweep", sweep), ("seeds", {"train.seed": seed})]
        source = point.get("transfer_source", source)
        if source != SCRATCH and source not in stages and not str(source).endswith(".pt"):
            raise ConfigError(f"transfer_source: {source!r} is neither 'scratch', a stage "
                              f"({', '.join(stages)}) nor a checkpoint file (*.pt)")
        # Epoch counts in base/stages/sweep are written for the cpu scale and multiplied; the user's own
        # `scales.<scale>` and --set values are taken as written.
        keep = _given_for_scale(layers, {f"scales.{scale}", "--set"})
        return _scale_epochs(resolve_config(layers), EPOCH_MULTIPLIER[scale], keep), source

    def build_run(stage: str, point: dict, seed: int, seen: tuple = ()) -> StageRun:
        if stage in seen:
            raise ConfigError(f"stages.{stage}: transfer_source chain loops ({' -> '.join(seen + (stage,))})")
        cfg, source = stage_config(stage, point, seed)
        upstream_point = {}  # upstream stages use their own declared config, not the sweep point
        upstream = build_run(source, upstream_point, seed, seen + (stage,)) if source in stages else None
        return StageRun(stage=stage, config=cfg, transfer_source=source, upstream=upstream)

    study.axes, points = _axes(spec)
    study.follows, study.names = _follows(spec, study.axes), _names(spec, points, default_stage=list(stages)[-1])
    default_stage = list(stages)[-1]
    for key in spec.baseline:
        if key not in study.axes:
            raise ConfigError(f"baseline.{key}: not a swept axis ({', '.join(study.axes) or 'none'})")
    for point in points:
        stage = point.get("stage", default_stage)
        if stage not in stages:
            raise ConfigError(f"sweep.stage: {stage!r} is not a stage ({', '.join(stages)})")
        is_base = bool(spec.baseline) and all(point.get(k) == v for k, v in spec.baseline.items())
        for seed in spec.seeds:
            run = build_run(stage, point, seed)
            study.trials.append(Trial(point=point, seed=seed, label=_label(point), run=run, is_baseline=is_base))
    keys = [t.key for t in study.trials]
    if len(set(keys)) < len(keys):
        dup = next(t for t in study.trials if keys.count(t.key) > 1)
        raise ConfigError(f"sweep/seeds: point {dup.label} with seed {dup.seed} appears twice "
                          f"(a repeated value in a sweep list or in seeds)")
    if spec.baseline and not any(t.is_baseline for t in study.trials):
        raise ConfigError(f"baseline: {spec.baseline} matches no sweep point")
    check_claims(spec.claims, study.axes, points, default_stage, spec.baseline)
    return study
