"""The study's grid as Optuna sees it: one Optuna study per stage, one parameter per swept axis.

Every swept axis (`diffusion.timesteps`, `train.subsets`, `model.dropout`, `transfer_source`, `stage`, ...) but
those that only follow from others (`sweep.follows`, bench/study.py), and the seed, is its own Optuna parameter
under its own name, with a distribution that fits its values (optuna.distributions): integers -> IntDistribution,
other numbers -> FloatDistribution (log-scaled when they span two decades or more, as a learning rate does),
anything else or a mix (strings, booleans, `null` beside numbers) -> CategoricalDistribution in the study file's
order. So optuna-dashboard's importance, slice, contour and parallel-coordinate plots show each axis on its own.

Why one Optuna study per stage, named `<study>/<stage>` (`<study>/main` for a study without stages): stages differ
in task and data (face inpainting, face colorization, landscape colorization), so their quality metrics are
different quantities (a KID of 0.17 for inpainting and of 0.6 for colorization say nothing about each other); on
one objective axis the history, importance and slice plots would rank them as if they were one. Within a stage
every trial is scored on the same task and test split. One multi-objective study (one objective per stage) would
leave every trial with objectives it never measured, and Optuna requires them all. Single-stage studies are
`<study>/main` too: one naming rule, and never the name that storages written before this layout use for their
one-`point`-parameter studies (left as they were; see `is_old_format`).
"""

from __future__ import annotations

import json
import math

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from .study import Study, Trial

SEED = "seed"
LOG_SPAN = 100.0  # positive floats whose max/min reaches this get a log axis (learning rates, weight decays)


def optuna_study_name(study_name: str, stage: str) -> str:
    """The Optuna study holding the trials that train `stage`: `<study>/<stage>`."""
    return f"{study_name}/{stage}"


def trials_by_stage(study: Study) -> dict[str, list[Trial]]:
    """The study's trials grouped by the stage they train, stages in the study file's order."""
    out: dict[str, list[Trial]] = {}
    for t in study.trials:
        out.setdefault(t.run.stage, []).append(t)
    return out


def param_value(value):
    """A sweep value as an Optuna parameter value: scalars as they are, lists and mappings as JSON text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value, sort_keys=True)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def distribution(values: list) -> BaseDistribution:
    """The distribution of one axis from all the values it takes (every value lies inside it)."""
    values = [param_value(v) for v in values]
    if all(_is_int(v) for v in values):
        return IntDistribution(min(values), max(values))
    if all(_is_number(v) for v in values):
        low, high = float(min(values)), float(max(values))
        return FloatDistribution(low, high, log=low > 0 and high / low >= LOG_SPAN)
    return CategoricalDistribution(list(dict.fromkeys(values)))


def metric_name(quality_metric: str) -> str:
    """The objective's name in optuna-dashboard: the quality metric as its raw value is stored (`kid` -> `KID`,
    not the report's KID×10³: Optuna keeps the unscaled value)."""
    return quality_metric.upper()


def search_space(trials: list[Trial], follows=()) -> dict[str, BaseDistribution]:
    """{parameter name: distribution} of a group of trials: their swept axes in the file's order, then seed.
    Axes in `follows` (set by the others, bench/study.py) are not parameters: they would show in
    optuna-dashboard's importance and slice plots as if they were ablated."""
    axes = [k for k in dict.fromkeys(k for t in trials for k in t.point) if k not in set(follows)]
    space = {axis: distribution([t.point[axis] for t in trials]) for axis in axes}
    space[SEED] = distribution([t.seed for t in trials])
    return space


def params(trial: Trial, space: dict[str, BaseDistribution]) -> dict:
    """The trial's parameter values (external representation), one per axis of `space`."""
    values = {axis: param_value(v) for axis, v in trial.point.items()}
    values[SEED] = trial.seed
    return {name: values[name] for name in space}


def grid(space: dict[str, BaseDistribution], trials: list[Trial]) -> dict[str, list]:
    """GridSampler's search space: every value of each axis. A zipped sweep is a subset of this product;
    the harness never asks the sampler for a point (every trial is created with its parameters fixed)."""
    return {name: list(dict.fromkeys(params(t, space)[name] for t in trials)) for name in space}


def is_old_format(summary) -> bool:
    """A study written before one parameter per axis (one categorical `point` parameter, no stage in its name).
    `summary`: an optuna StudySummary or FrozenStudy."""
    attrs = summary.user_attrs
    return "axes" in attrs and "stage" not in attrs
