"""A study file's `claims:`: the paper's statements as data, checked against the study's sweep.

    claims:
      - id: table1-equal-epochs                       # unique within the file; the claims table's key
        statement: "Table 1: N = 4 subsets at equal epochs train in a quarter of the time"
        paper: "x4 faster; FID 20.9 vs 19.2"          # the paper's number, as it reports it
        compare: {train.subsets: 4, train.epochs_per_subset: 40}   # picks one config by axis values
        against: {}                                   # the reference config; {} = the study's baseline
        measure: kid                                  # see MEASURES
        stage: face_inpaint                           # optional: the stage both configs train

The table built from them (bench/report/verdicts.py) computes the verdict; nothing in it is typed.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from model.errors import ConfigError

# quality metrics (trials.csv's final values), costs (hours: CPU hours where recorded, else wall hours) and
# the cost to reach a target (bench/report/cost.py: the stage baseline's final quality, the best trivial one)
QUALITY_MEASURES = ("fid", "kid", "l1", "psnr", "ssim", "l1_hole", "psnr_hole", "ssim_hole", "val_loss")
COST_MEASURES = ("hours", "wall_hours", "images_seen", "steps", "time_per_epoch", "ddpm_seconds_per_image")
REACH_MEASURES = tuple(f"to_{target}_{what}" for target in ("baseline", "trivial")
                       for what in ("images", "steps", "hours"))
MEASURES = QUALITY_MEASURES + COST_MEASURES + REACH_MEASURES


class Claim(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    statement: str = Field(min_length=1)
    paper: str = ""
    compare: dict = Field(min_length=1)
    against: dict = Field(default_factory=dict)
    measure: Literal[MEASURES]  # type: ignore[valid-type]
    stage: str | None = None
    # the metric a `to_baseline_*` target is read on (default: the study's quality_metric); e.g. `val_loss`, the
    # held-out loss (model/heldout.py) that a run can record every few epochs where KID is only affordable at the end
    signal: Literal[QUALITY_MEASURES] | None = None  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _signal_for_reach(self):
        if self.signal is not None and not self.measure.startswith("to_baseline_"):
            raise ValueError(f"signal: {self.signal!r} applies to a to_baseline_* measure, not {self.measure!r}")
        return self


def matches(point: dict, selector: dict) -> bool:
    """Whether a sweep point has every axis value of `selector`."""
    return all(k in point and point[k] == v for k, v in selector.items())


def check_claims(claims: list[Claim], axes: list[str], points: list[dict], default_stage: str,
                 baseline: dict) -> None:
    """Each claim's selectors name swept axes and pick exactly one config (of its stage, when given).

    Raises ConfigError naming `claims[i].<key>`."""
    ids = [c.id for c in claims]
    for i, c in enumerate(claims):
        where = f"claims[{i}]"
        if ids.count(c.id) > 1:
            raise ConfigError(f"{where}.id: {c.id!r} appears twice")
        if c.stage is not None and c.stage not in {p.get("stage", default_stage) for p in points}:
            raise ConfigError(f"{where}.stage: {c.stage!r} is not a stage any sweep point trains")
        against = c.against or baseline
        if not against:
            raise ConfigError(f"{where}.against: the study has no baseline; name the reference config "
                              "by axis values")
        for key, selector in (("compare", c.compare), ("against", against)):
            for axis in selector:
                if axis not in axes:
                    raise ConfigError(f"{where}.{key}.{axis}: not a swept axis ({', '.join(axes) or 'none'})")
            picked = [p for p in points if matches(p, selector)
                      and (c.stage is None or p.get("stage", default_stage) == c.stage)]
            labels = list(dict.fromkeys(",".join(f"{k}={v}" for k, v in p.items()) for p in picked))
            if len(labels) != 1:
                found = "no sweep point" if not labels else f"{len(labels)} configs ({'; '.join(labels)})"
                raise ConfigError(f"{where}.{key}: {selector} matches {found}; it must pick one config")
