"""The statistics behind every verdict: paired differences over seeds, their t intervals, the verdict word.

A config and its stage's baseline trained with the same seed share the network's initialisation, the data
order and the evaluation noise (model/evaluate.py seeds sample i with seed + i), so they are compared as a
*paired* difference over seeds (Student 1908; any statistics text, e.g. Wasserman, "All of Statistics", 7.3):

    d_s = x_s - b_s,   mean d̄,   sd s_d,   95% interval d̄ ± t_{0.975, n-1} s_d / sqrt(n)

The relative difference is the geometric mean of the per-seed ratios x_s / b_s with the same t interval on
log(x_s / b_s) (only where every value is positive: KID's unbiased estimate can be negative). The verdict word
comes from the interval alone: "better" or "worse" when it excludes 0 (which side is better depends on the
metric: gate.LOWER_IS_BETTER and TIME_MEASURES), otherwise "no difference resolved with n seeds"; one seed
gives no interval and no word. The smallest difference the study could have resolved is the interval's
half-width (a difference smaller than that cannot exclude 0 with this spread and n). Pure functions on numpy
/ pandas; scipy.stats for the t quantiles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

from .gate import LOWER_IS_BETTER

LEVEL = 0.95
# costs: lower is better (hours, images, steps, and the cost-to-target columns of bench/report/cost.py)
TIME_MEASURES = {"total_hours", "cpu_hours", "time_per_epoch_min", "cpu_per_epoch_min", "images_seen", "steps",
                 "hours", "wall_hours", "time_per_epoch", "ddpm_seconds_per_image", "sample_seconds_per_image"}
CONTENDED_RATIO = 1.3  # wall/CPU above this multiple of the study's median: timed on a busy machine
MAX_SEEDS = 100  # "seeds needed" beyond this is reported as "> 100"


def lower_is_better(measure: str) -> bool:
    """Whether a smaller value of `measure` is better (quality metrics per gate.LOWER_IS_BETTER; costs)."""
    base = measure.removesuffix("_se")
    return base in LOWER_IS_BETTER or base in TIME_MEASURES or base.startswith("to_")


def t_quantile(n: int, level: float = LEVEL) -> float:
    """t_{(1+level)/2, n-1}: the multiplier of the standard error for a two-sided interval over n values."""
    return float(sps.t.ppf((1 + level) / 2, n - 1)) if n >= 2 else math.nan


@dataclass(frozen=True)
class Paired:
    """A paired comparison of a config (x) with its baseline (b) over n seeds; diff = x - b."""

    measure: str
    n: int
    mean_x: float
    mean_b: float
    diff: float  # mean of x_s - b_s
    sd: float  # sd of the differences (NaN with one seed)
    lo: float  # 95% t interval of the mean difference (NaN with one seed)
    hi: float
    ratio: float  # geometric mean of x_s / b_s (NaN where a value is not positive)
    ratio_lo: float
    ratio_hi: float

    log_sd: float = math.nan  # sd of the per-seed log ratios

    @property
    def on_ratio(self) -> bool:
        """Costs (times, images) vary by a factor (a loaded machine slows every step alike), so their verdict
        comes from the interval of the log ratio where it exists; quality from the difference's."""
        return lower_is_better(self.measure) and self.measure not in LOWER_IS_BETTER \
            and math.isfinite(self.ratio_lo)

    @property
    def half_width(self) -> float:
        """The smallest difference this comparison could resolve: the interval's half-width (for a cost judged
        on its ratio: the interval's half-width of the log ratio, as a factor exp(h) - 1)."""
        if self.on_ratio:
            return math.sqrt(self.ratio_hi / self.ratio_lo) - 1
        return (self.hi - self.lo) / 2

    @property
    def verdict(self) -> str:
        """'better' / 'worse' (the interval excludes 0, or 1 for a ratio), 'no difference resolved with n seeds',
        or '' (one seed: no interval, no verdict word)."""
        if self.on_ratio:
            return verdict(math.log(self.ratio_lo), math.log(self.ratio_hi), self.n, self.measure)
        return verdict(self.lo, self.hi, self.n, self.measure)

    def seeds_needed(self) -> int | None:
        """Roughly how many seeds an interval needs to exclude 0 if the observed mean difference and sd are the
        truth (smallest n with t_{n-1} s_d / sqrt(n) < |d̄|, on the log ratio for a cost); None when that is
        undefined (sd or d̄ is 0 or NaN), MAX_SEEDS + 1 when it is more than MAX_SEEDS."""
        if self.on_ratio:
            return seeds_needed(math.log(self.ratio), self.log_sd)
        return seeds_needed(self.diff, self.sd)


def t_interval(values, level: float = LEVEL) -> tuple[float, float, float, float, int]:
    """(mean, sd, lo, hi, n) of the finite `values`: the mean with its two-sided t interval (NaN below n = 2)."""
    v = np.asarray(pd.to_numeric(pd.Series(values), errors="coerce"), dtype=float)
    v = v[np.isfinite(v)]
    n = len(v)
    if n == 0:
        return math.nan, math.nan, math.nan, math.nan, 0
    mean = float(v.mean())
    if n < 2:
        return mean, math.nan, math.nan, math.nan, n
    sd = float(v.std(ddof=1))
    h = t_quantile(n, level) * sd / math.sqrt(n)
    return mean, sd, mean - h, mean + h, n


def paired(x: pd.Series, b: pd.Series, measure: str, level: float = LEVEL) -> Paired:
    """Paired comparison of x and b, two Series indexed by seed; only seeds where both are finite count."""
    x = pd.to_numeric(x, errors="coerce").groupby(level=0).mean()
    b = pd.to_numeric(b, errors="coerce").groupby(level=0).mean()
    both = pd.concat([x.rename("x"), b.rename("b")], axis=1, join="inner").dropna()
    both = both[np.isfinite(both["x"]) & np.isfinite(both["b"])]
    diff, sd, lo, hi, n = t_interval(both["x"] - both["b"], level)
    ratio = ratio_lo = ratio_hi = log_sd = math.nan
    if n and (both > 0).all().all():
        m, log_sd, rlo, rhi, _ = t_interval(np.log(both["x"] / both["b"]), level)
        ratio, ratio_lo, ratio_hi = math.exp(m), math.exp(rlo), math.exp(rhi)
    return Paired(measure, n, float(both["x"].mean()) if n else math.nan, float(both["b"].mean()) if n else math.nan,
                  diff, sd, lo, hi, ratio, ratio_lo, ratio_hi, log_sd)


def verdict(lo: float, hi: float, n: int, measure: str) -> str:
    """The verdict word of an interval [lo, hi] of x - b over n seeds (see the module docstring)."""
    if n < 2 or not (math.isfinite(lo) and math.isfinite(hi)):
        return ""
    if lo > 0 or hi < 0:
        smaller = hi < 0
        return "better" if smaller == lower_is_better(measure) else "worse"
    return f"no difference resolved with {n} seeds"


def seeds_needed(diff: float, sd: float, level: float = LEVEL) -> int | None:
    """The smallest n >= 2 with t_{n-1} sd / sqrt(n) < |diff| (None when diff or sd is 0 / NaN)."""
    if not (math.isfinite(diff) and math.isfinite(sd)) or diff == 0 or sd == 0:
        return None
    for n in range(2, MAX_SEEDS + 1):
        if t_quantile(n, level) * sd / math.sqrt(n) < abs(diff):
            return n
    return MAX_SEEDS + 1


def contended(wall: pd.Series, cpu: pd.Series, threshold: float = CONTENDED_RATIO) -> pd.Series:
    """Per trial: True when its wall/CPU time ratio is above `threshold` x the median ratio of the trials given
    (a busy machine stretches wall time, not the process's CPU time); None where a time is missing or 0."""
    w, c = pd.to_numeric(wall, errors="coerce"), pd.to_numeric(cpu, errors="coerce")
    ratio = (w / c.where(c > 0)).where(lambda r: np.isfinite(r))
    median = ratio.median()
    out = (ratio > threshold * median).astype(object)
    out[ratio.isna()] = None
    return out


def fmt_interval(p: Paired, scale: float = 1.0, digits: int = 3) -> str:
    """'+1.2 [0.4, 2.0]' (the mean difference and its interval, x scale); one seed: the difference alone."""
    if p.n == 0:
        return "–"
    d = f"{p.diff * scale:+.{digits}g}"
    return d if p.n < 2 else f"{d} [{p.lo * scale:+.{digits}g}, {p.hi * scale:+.{digits}g}]"


def fmt_ratio(p: Paired, digits: int = 3) -> str:
    """'0.81× [0.7, 0.93]' (geometric mean ratio and its interval), or '–' where it is undefined."""
    if not math.isfinite(p.ratio):
        return "–"
    r = f"{p.ratio:.{digits}g}×"
    return r if p.n < 2 else f"{r} [{p.ratio_lo:.{digits}g}, {p.ratio_hi:.{digits}g}]"


def resolvable(p: Paired, scale: float = 1.0) -> str:
    """The smallest difference the comparison could resolve, in words ('±0.3, the interval's half-width')."""
    if p.on_ratio:
        return f"a factor ×/÷{p.half_width + 1:.3g} on the ratio (the interval's half-width on the log ratio)"
    return f"±{p.half_width * scale:.3g}, the interval's half-width"


def sentence(p: Paired, name: str, scale: float = 1.0) -> str:
    """One clause stating a comparison: the numbers, then the verdict word and what it could resolve."""
    text = f"{name} {fmt_interval(p, scale)} (ratio {fmt_ratio(p)}, {p.n} seed{'s' if p.n != 1 else ''})"
    if p.n < 2:
        return text + ": one seed, no verdict"
    v = p.verdict
    if v.startswith("no difference"):
        need = p.seeds_needed()
        more = ("" if need is None else
                f"; about {need if need <= MAX_SEEDS else f'> {MAX_SEEDS}'} seeds would resolve the observed "
                "difference")
        return text + f": {v} (smallest resolvable difference {resolvable(p, scale)}{more})"
    return text + f": {v}"
