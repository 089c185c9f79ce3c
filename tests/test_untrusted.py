"""Untrusted files: nothing a checkpoint, study file, --set value or cache smuggles in is ever executed, and
no name in a study file can make the harness write outside the results folder."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
import torch
from _reliability import TINY_BASE, assert_same_weights, final_weights, run_args, tiny_study

from bench import cli
from bench.presets import SCALES
from bench.study import _flatten, resolve_config
from model.checkpoint import FORMAT, latest_checkpoint, list_checkpoints, load_checkpoint
from model.data import cache
from model.errors import CheckpointError
from model.trainer import Budget, train


class Payload:
    """Pickles as a call to os.system: executed by any unsafe unpickler (torch.load(weights_only=False))."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def booby_trapped_checkpoint(path, marker, cfg=None):
    """A checkpoint with every key a real one has, plus a pickled call to os.system."""
    cfg = cfg or tiny_config()
    torch.save({"format": FORMAT, "config": cfg.model_dump_json(), "net": {}, "ema": {}, "optimizer": {},
                "scheduler": {}, "rng": {}, "progress": {}, "history": [], "extra": Payload(marker)}, path)
    return path


def tiny_config(**dotted):
    return resolve_config([("preset", SCALES["smoke"]), ("base", _flatten(TINY_BASE)), ("test", dotted)])


def test_the_payload_really_is_armed(tmp_path):
    """Control: loading it unsafely does run the command (so the tests below prove something)."""
    marker = tmp_path / "pwned"
    path = booby_trapped_checkpoint(tmp_path / "evil.pt", marker)
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_pickled_code_in_a_checkpoint_is_refused_not_run(tmp_path):
    marker = tmp_path / "pwned"
    path = booby_trapped_checkpoint(tmp_path / "evil.pt", marker)
    with pytest.raises(CheckpointError, match=r"evil\.pt: refused to load: the file holds more than weights"):
        load_checkpoint(path)
    assert not marker.exists()


def test_pickled_code_as_transfer_source_is_refused(tmp_path, capsys):
    marker = tmp_path / "pwned"
    evil = booby_trapped_checkpoint(tmp_path / "evil.pt", marker)
    study_file = tiny_study(tmp_path / "study.yaml", stages={"main": {"transfer_source": str(evil)}})
    results = tmp_path / "R"
    assert cli.main(run_args(study_file, results)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert re.search(r"study\.yaml: transfer_source: .*evil\.pt: refused to load", err), err
    assert not marker.exists() and not results.exists()


def test_pickled_code_planted_as_newest_checkpoint_is_set_aside_and_the_run_resumes(tmp_path, capsys):
    """A file dropped into a run's checkpoints/ is never unpickled unsafely: it is set aside as .bad and the
    run resumes from the newest genuine checkpoint, reaching the weights of an uninterrupted run."""
    cfg = tiny_config(**{"eval.every_epochs": 0})
    train(cfg, tmp_path / "clean", device="cpu")
    run = tmp_path / "run"
    assert train(cfg, run, device="cpu", budget=Budget(epochs=1)).status == "paused"
    marker = tmp_path / "pwned"
    planted = booby_trapped_checkpoint(run / "checkpoints" / "ckpt-9999999999.pt", marker, cfg)
    assert latest_checkpoint(run / "checkpoints") == planted
    result = train(cfg, run, device="cpu")
    assert result.status == "done" and result.resumed_from != planted
    assert not marker.exists()
    assert (run / "checkpoints" / "ckpt-9999999999.pt.bad").exists()
    assert planted not in list_checkpoints(run / "checkpoints")
    assert "refused to load" in capsys.readouterr().err
    assert_same_weights(final_weights(run), final_weights(tmp_path / "clean"))


def test_bench_evaluate_refuses_a_booby_trapped_run(tmp_path, capsys):
    marker = tmp_path / "pwned"
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    booby_trapped_checkpoint(tmp_path / "run" / "checkpoints" / "ckpt-0000000001.pt", marker)
    assert cli.main(["evaluate", str(tmp_path / "run"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "refused to load" in err and len(err.strip().splitlines()) == 1
    assert not marker.exists()


YAML_TAGS = [
    "base: !!python/object/apply:os.system ['touch {m}']",
    "base: !!python/object/new:os.system ['touch {m}']",
    "name: !!python/name:os.system",
    "seeds: !!python/object/apply:subprocess.check_call [['touch', '{m}']]",
]


@pytest.mark.parametrize("line", YAML_TAGS, ids=["apply", "new", "name", "subprocess"])
def test_yaml_tags_are_not_executed_and_are_a_clear_error(line, tmp_path, capsys):
    marker = tmp_path / "pwned"
    study_file = tmp_path / "study.yaml"
    study_file.write_text("description: tagged\n" + line.format(m=marker) + "\n")
    results = tmp_path / "R"
    assert cli.main(run_args(study_file, results)) == 2
    err = capsys.readouterr().err.strip()
    expected = rf"error: {re.escape(str(study_file))}: YAML tag not allowed at line 2, column \d+ .*"
    assert re.fullmatch(expected, err), err
    assert not marker.exists() and not results.exists()


def test_yaml_tags_in_set_values_and_train_configs_are_refused(tmp_path, capsys):
    marker = tmp_path / "pwned"
    study_file = tiny_study(tmp_path / "study.yaml")
    tag = f"!!python/object/apply:os.system ['touch {marker}']"
    assert cli.main(run_args(study_file, tmp_path / "R", "--set", f"train.lr={tag}")) == 2
    assert "YAML tags are not allowed" in capsys.readouterr().err
    config = tmp_path / "one.yaml"
    config.write_text(f"train: {tag}\n")
    assert cli.main(["train", str(config), "--scale", "smoke", "--results", str(tmp_path / "R")]) == 2
    assert f"{config}: YAML tag not allowed at line 1" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "R").exists()


def test_a_pickled_object_in_a_data_cache_is_not_loaded(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "images" / "faces-train-16px-0000.npz"
    path.parent.mkdir()
    np.savez(path, images=np.zeros((1, 2, 2, 3), np.uint8), names=np.array([Payload(marker)], dtype=object),
             stats=np.array("{}"))
    assert cache.load(path) is None  # unusable: rebuilt from the source, never unpickled
    assert not marker.exists()


@pytest.mark.parametrize("name", ["../escape", "/etc/cron.d/x", "a/b", "..", ".", ".hidden", "x" * 65, "a\\b",
                                  "a b", "a\nb"])
def test_study_names_cannot_leave_the_results_folder(name, tmp_path, capsys):
    study_file = tiny_study(tmp_path / "work" / "study.yaml", name=name)
    results = tmp_path / "R"
    assert cli.main(run_args(study_file, results)) == 2
    assert "name" in capsys.readouterr().err
    assert not results.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]  # nothing written next to R either


@pytest.mark.parametrize("stage", ["../up", "..", "a/b", "/abs", ".x"])
def test_stage_names_cannot_leave_the_results_folder(stage, tmp_path, capsys):
    study_file = tiny_study(tmp_path / "work" / "study.yaml", stages={stage: {}})
    assert cli.main(run_args(study_file, tmp_path / "R")) == 2
    assert "stage names use letters" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]


def test_a_study_file_named_like_a_path_gets_a_safe_default_name(tmp_path, capsys):
    """Without `name:`, the file's stem names the study; a stem that is not a safe name is refused."""
    weird = tmp_path / "work" / "..yaml"
    tiny_study(weird, name=None)
    assert cli.main(run_args(weird, tmp_path / "R")) == 2
    assert "no path separators" in capsys.readouterr().err
    assert not (tmp_path / "R").exists()
