"""Study files: expansion of grids, zips, seeds and stage chains; validation at the edge."""

from __future__ import annotations

import textwrap

import pytest

from bench.study import SCRATCH, load_study
from model.errors import ConfigError


def _study(tmp_path, text: str, scale: str = "smoke", name: str = "s.yaml", **kw):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return load_study(path, scale, **kw)


def test_grid_crosses_axes_and_seeds_repeat_points(tmp_path):
    study = _study(tmp_path, """
        sweep:
          grid: {model.dropout: [0.0, 0.1], train.subsets: [1, 2, 4]}
        seeds: [0, 1]
    """)
    assert len(study.trials) == 2 * 3 * 2
    points = {(t.point["model.dropout"], t.point["train.subsets"]) for t in study.trials}
    assert points == {(d, n) for d in (0.0, 0.1) for n in (1, 2, 4)}
    t = study.trials[0]
    assert t.run.config.model.dropout == t.point["model.dropout"]
    assert t.run.config.train.seed == t.seed
    assert len({t.key for t in study.trials}) == len(study.trials)


def test_zip_moves_axes_together_and_crosses_with_grid(tmp_path):
    study = _study(tmp_path, """
        sweep:
          zip: {diffusion.timesteps: [2000, 1200], diffusion.match_terminal: [null, 2000]}
          grid: {model.dropout: [0.0, 0.2]}
        baseline: {diffusion.timesteps: 2000}
    """)
    pairs = {(t.run.config.diffusion.timesteps, t.run.config.diffusion.match_terminal, t.run.config.model.dropout)
             for t in study.trials}
    assert pairs == {(2000, None, 0.0), (2000, None, 0.2), (1200, 2000, 0.0), (1200, 2000, 0.2)}
    assert [t.is_baseline for t in study.trials].count(True) == 2


def test_precedence_preset_base_scale_sweep(tmp_path):
    study = _study(tmp_path, """
        base: {train: {lr: 0.001, epochs_per_subset: 7}, data.image_size: 32, model.attn_resolutions: [16]}
        scales: {smoke: {train.epochs_per_subset: 2}}
        sweep: {grid: {train.lr: [0.002]}}
    """)
    cfg = study.trials[0].run.config
    assert cfg.data.image_size == 32  # base beats the preset (16 at smoke)
    assert cfg.train.epochs_per_subset == 2  # scales.smoke beats base
    assert cfg.train.lr == 0.002  # the sweep beats everything
    assert cfg.model.base_channels == 16  # preset where nobody else speaks


def test_stage_chains_share_upstream_runs(tmp_path):
    study = _study(tmp_path, """
        stages:
          inpaint: {task.name: inpainting}
          color: {task.name: colorization, transfer_source: inpaint}
          land: {task.name: colorization, data.source: synthetic-landscapes, transfer_source: color}
        sweep:
          zip:
            stage: [color, color, land, land, land]
            transfer_source: [scratch, inpaint, scratch, color, inpaint]
        baseline: {transfer_source: scratch}
    """)
    chains = [[r.stage for r in t.run.chain()] for t in study.trials]
    assert chains == [["color"], ["inpaint", "color"], ["land"], ["inpaint", "color", "land"], ["inpaint", "land"]]
    # the upstream inpainting run is one run, whichever trial needs it
    inpaint_keys = {r.key for t in study.trials for r in t.run.chain() if r.stage == "inpaint"}
    assert len(inpaint_keys) == 1
    # the color run used upstream of "land" is the declared one (from inpaint), not the scratch trial
    color_from_scratch = study.trials[0].run
    assert color_from_scratch.transfer_source == SCRATCH
    assert study.trials[3].run.upstream.key == study.trials[1].run.key
    assert study.trials[2].run.config.task.name == "colorization"
    assert study.trials[2].run.config.data.source == "synthetic-landscapes"


def test_stage_scoped_overrides(tmp_path):
    study = _study(tmp_path, """
        stages:
          a: {task.name: inpainting}
          b: {task.name: colorization, transfer_source: a}
        sweep: {zip: {stage: [b]}}
    """, overrides={"b.train.lr": 0.003, "train.batch_size": 4})
    a, b = study.trials[0].run.chain()
    assert b.config.train.lr == 0.003 and a.config.train.lr != 0.003
    assert a.config.train.batch_size == b.config.train.batch_size == 4


@pytest.mark.parametrize("text, message", [
    ("sweep: {grid: {train.epoch: [1]}}", r"sweep\.train\.epoch: unknown key \(did you mean 'train\.epochs'\?\)"),
    ("base: {train: {lr: -1}}", r"train\.lr: Input should be greater than 0"),
    ("base: {data.image_size: 15}", r"image_size=15 must be divisible by 2"),
    ("base: {data.image_size: 32}", r"attn_resolutions: 8 is not a feature-map size .* \(sizes: 32, 16\)"),
    ("sweep: {zip: {train.lr: [1, 2], train.subsets: [1]}}", r"same length"),
    ("baseline: {train.lr: 1}", r"baseline\.train\.lr: not a swept axis"),
    ("sweeps: {}", r"sweeps: unknown key \(did you mean 'sweep'\?\)"),
    ("name: ../evil", r"no path separators"),
    ("base: {diffusion.timesteps: 0}", r"diffusion\.timesteps: Input should be greater than or equal to 1"),
    ("stages: {a: {transfer_source: b}, b: {transfer_source: a}}", r"loops"),
    ("base: [1, 2]", r"base: Input should be a valid dictionary"),
])
def test_validation_errors_name_file_and_key(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message) as err:
        _study(tmp_path, text)
    assert str(err.value).startswith(str(tmp_path / "s.yaml"))
    assert "\n" not in str(err.value)


def test_yaml_is_loaded_safely(tmp_path):
    with pytest.raises(ConfigError, match="YAML syntax error|could not determine a constructor|cannot"):
        _study(tmp_path, "base: !!python/object/apply:os.system ['true']")


def test_paper_scale_multiplies_the_files_epochs_but_not_the_users_own(tmp_path):
    text = """
        base: {train.epochs_per_subset: 4, eval.every_epochs: 2, data.path: /data/faces}
        stages: {a: {data.source: folder}, b: {data.source: folder, train.epochs: 3}}
        sweep: {grid: {stage: [a, b]}}
        scales: {paper: {a.eval.every_epochs: 7}}
    """
    plain = {t.run.stage: t.run.config for t in _study(tmp_path, text, "paper").trials}
    # cpu-scale counts x 1.25, rounded to whole epochs
    assert plain["a"].train.epochs_per_subset == 5 and plain["b"].train.epochs == 4
    assert plain["a"].eval.every_epochs == 7 and plain["b"].eval.every_epochs == 2  # scales.paper as written
    sets = {"train.epochs": 2, "b.train.epochs_per_subset": 1}
    told = {t.run.stage: t.run.config for t in _study(tmp_path, text, "paper", overrides=sets).trials}
    assert told["a"].train.epochs == 2 and told["b"].train.epochs == 2  # --set as written
    assert told["a"].train.epochs_per_subset == 5 and told["b"].train.epochs_per_subset == 1


def test_seeds_from_the_command_line_replace_the_files(tmp_path):
    text = """
        sweep: {grid: {model.dropout: [0.0, 0.1]}}
        seeds: [0]
    """
    study = _study(tmp_path, text, seeds=[0, 1, 2])
    assert sorted((t.point["model.dropout"], t.seed) for t in study.trials) == [
        (d, s) for d in (0.0, 0.1) for s in (0, 1, 2)]
    assert {t.run.config.train.seed for t in study.trials} == {0, 1, 2}
    assert study.seeds_override == [0, 1, 2]
    # seed 0's trials are the file's own: a later --seeds run reuses them instead of training them again
    assert {t.key for t in _study(tmp_path, text).trials} <= {t.key for t in study.trials}
