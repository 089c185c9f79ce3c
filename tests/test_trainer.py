"""The incremental-learning trainer: Algorithm 2, sessions, exact resume (even after SIGKILL), transfer."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from model import incremental
from model.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint
from model.ema import make_ema
from model.errors import CheckpointError, DataError
from model.trainer import Budget, build_network, load_transfer_weights, train


def _weights(run_dir: Path) -> dict:
    return load_checkpoint(latest_checkpoint(Path(run_dir) / "checkpoints"))["net"]


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_subsets_are_a_seeded_stable_partition():
    parts = incremental.split_subsets(103, 4, seed=7)
    joined = np.sort(np.concatenate(parts))
    assert np.array_equal(joined, np.arange(103))
    assert {len(p) for p in parts} <= {25, 26}
    again = incremental.split_subsets(103, 4, seed=7)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))
    other = incremental.split_subsets(103, 4, seed=8)
    assert not all(np.array_equal(a, b) for a, b in zip(parts, other, strict=True))
    # Algorithm 2: E epochs on subset 0, then E on subset 1, ...; more epochs than N*E cycle
    assert [incremental.subset_of_epoch(e, 3, 2) for e in range(8)] == [0, 0, 1, 1, 2, 2, 0, 0]
    with pytest.raises(ValueError, match="more than"):
        incremental.split_subsets(3, 4, seed=0)


def test_incremental_epochs_visit_one_subset_each(tmp_path, smoke_config):
    cfg = smoke_config(train__subsets=3, train__epochs_per_subset=2)
    result = train(cfg, tmp_path / "run", device="cpu")
    assert result.status == "done"
    assert [h["subset"] for h in result.history] == [1, 1, 2, 2, 3, 3]
    sizes = [h["subset_size"] for h in result.history]
    assert sum(sizes[::2]) == 24  # the three subsets partition the 24 training images
    assert result.history[-1]["images_seen"] == 2 * 24
    assert all(h["epoch_seconds"] > 0 for h in result.history)


def test_one_subset_is_batch_learning(tmp_path, smoke_config):
    a = train(smoke_config(train__subsets=1, train__epochs_per_subset=2), tmp_path / "a", device="cpu")
    train(smoke_config(train__subsets=1, train__epochs=2), tmp_path / "b", device="cpu")
    assert [h["subset_size"] for h in a.history] == [24, 24]
    _assert_same(_weights(tmp_path / "a"), _weights(tmp_path / "b"))


def test_session_budget_stops_and_resumes_to_the_same_weights(tmp_path, smoke_config):
    cfg = smoke_config(train__subsets=2, train__epochs_per_subset=2)
    full = train(cfg, tmp_path / "full", device="cpu")
    first = train(cfg, tmp_path / "sessions", device="cpu", budget=Budget(epochs=1))
    assert first.status == "paused" and len(first.history) == 1
    second = train(cfg, tmp_path / "sessions", device="cpu", budget=Budget(epochs=2))
    assert second.status == "paused" and second.resumed_from is not None
    third = train(cfg, tmp_path / "sessions", device="cpu")
    assert third.status == "done"
    assert [h["images_seen"] for h in third.history] == [h["images_seen"] for h in full.history]
    _assert_same(_weights(tmp_path / "full"), _weights(tmp_path / "sessions"))
    ema_a = load_checkpoint(latest_checkpoint(tmp_path / "full" / "checkpoints"))["ema"]
    ema_b = load_checkpoint(latest_checkpoint(tmp_path / "sessions" / "checkpoints"))["ema"]
    _assert_same(ema_a, ema_b)


_KILL_SCRIPT = textwrap.dedent("""
    import sys, torch
    torch.set_num_threads(1)
    from model.config import RunConfig
    from model.trainer import train
    cfg = RunConfig.model_validate_json(open(sys.argv[1]).read())
    train(cfg, sys.argv[2], device="cpu")
""")


def test_sigkill_mid_epoch_then_resume_gives_identical_weights(tmp_path, smoke_config):
    cfg = smoke_config(train__subsets=2, train__epochs_per_subset=2, train__checkpoint_every_steps=1,
                       train__keep_checkpoints=3)
    train(cfg, tmp_path / "full", device="cpu")
    (tmp_path / "cfg.json").write_text(cfg.model_dump_json())
    run = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, str(tmp_path / "cfg.json"), str(run)], env=env)
    deadline = time.time() + 120
    while time.time() < deadline and len(list_checkpoints(run / "checkpoints")) < 3:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    ckpt = load_checkpoint(latest_checkpoint(run / "checkpoints"))
    assert ckpt["progress"]["epoch"] < 4, "the kill should land before the run finished"
    resumed = train(cfg, run, device="cpu")
    assert resumed.status == "done" and resumed.resumed_from is not None
    _assert_same(_weights(tmp_path / "full"), _weights(run))


def test_transfer_loads_source_weights_and_refuses_another_architecture(tmp_path, smoke_config):
    source_cfg = smoke_config(train__epochs=1)
    train(source_cfg, tmp_path / "source", device="cpu")
    path = latest_checkpoint(tmp_path / "source" / "checkpoints")
    target_cfg = smoke_config(task__name="colorization", model__dropout=0.2)  # dropout may change
    net = build_network(target_cfg)
    ema = make_ema(net, 0.999)
    load_transfer_weights(path, net, ema, target_cfg)
    _assert_same(net.state_dict(), load_checkpoint(path)["net"])
    other = smoke_config(model__base_channels=32)
    with pytest.raises(CheckpointError, match="another architecture.*base_channels"):
        load_transfer_weights(path, build_network(other), make_ema(build_network(other), 0.9), other)
    result = train(target_cfg, tmp_path / "target", device="cpu", init_from=path)
    assert result.status == "done"


def test_checkpoints_refuse_truncation_and_pickled_code(tmp_path, smoke_config):
    train(smoke_config(train__epochs=1), tmp_path / "run", device="cpu")
    good = latest_checkpoint(tmp_path / "run" / "checkpoints")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(truncated)

    class Payload:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    evil = tmp_path / "evil.pt"
    torch.save({"format": "palette-bench-checkpoint/1", "x": Payload()}, evil)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(evil)
    assert not (tmp_path / "pwned").exists()


def test_resuming_with_another_config_is_refused(tmp_path, smoke_config):
    train(smoke_config(train__epochs=1), tmp_path / "run", device="cpu")
    from model.errors import ConfigError

    with pytest.raises(ConfigError, match="another config"):
        train(smoke_config(train__epochs=1, train__lr=1e-3), tmp_path / "run", device="cpu")


def test_missing_and_empty_folders_are_clear_errors(tmp_path, smoke_config):
    with pytest.raises(DataError, match="data.path|does not exist|not found"):
        train(smoke_config(data__source="folder", data__path=str(tmp_path / "nope")), tmp_path / "r1", device="cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images|empty"):
        train(smoke_config(data__source="folder", data__path=str(tmp_path / "empty")), tmp_path / "r2", device="cpu")


def test_history_is_written_for_humans(tmp_path, smoke_config):
    train(smoke_config(train__epochs=2), tmp_path / "run", device="cpu")
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[-1]["train_seconds"] >= history[0]["train_seconds"]


def test_a_checkpoint_from_another_kind_of_device_resumes_with_a_fresh_noise_stream(tmp_path, smoke_config, capfd):
    # A CUDA generator's state cannot be loaded into a CPU one (Philox vs Mersenne Twister): the run must
    # go on from the checkpoint's weights and say that its random stream restarted.
    cfg = smoke_config(train__subsets=1, train__epochs_per_subset=3)
    train(cfg, tmp_path / "run", device="cpu", budget=Budget(epochs=1))
    path = latest_checkpoint(tmp_path / "run" / "checkpoints")
    ckpt = load_checkpoint(path)
    assert ckpt["rng"]["generator_device"] == "cpu"
    ckpt["rng"]["generator"] = torch.zeros(16, dtype=torch.uint8)  # a Philox-sized state, as a GPU writes
    ckpt["rng"]["generator_device"] = "cuda"
    torch.save(ckpt, path)
    capfd.readouterr()
    result = train(cfg, tmp_path / "run", device="cpu")
    assert result.status == "done" and result.resumed_from == path
    assert "written on another kind of device (cuda)" in capfd.readouterr().err
    assert [h["epoch"] for h in result.history] == [1, 2, 3]
    assert all(np.isfinite(h["loss"]) for h in result.history)


def test_a_run_folder_from_before_a_later_key_still_resumes(tmp_path, smoke_config):
    # train.processes was added after run folders existed: a folder and checkpoint without it (at its old
    # behaviour, 1 process) are the same run, and another value is another run.
    from model.config import RunConfig, run_identity

    cfg = smoke_config(train__epochs=2)
    train(cfg, tmp_path / "run", device="cpu", budget=Budget(epochs=1))
    config_path = tmp_path / "run" / "config.json"
    old = json.loads(config_path.read_text())
    del old["train"]["processes"]
    config_path.write_text(json.dumps(old))
    assert run_identity(old) == run_identity(cfg)
    assert run_identity(RunConfig.model_validate(old).model_copy(update={"train": cfg.train.model_copy(
        update={"processes": 2})})) != run_identity(cfg)
    assert train(cfg, tmp_path / "run", device="cpu").status == "done"


def test_checkpoint_minutes_skips_epoch_checkpoints_but_keeps_sessions_and_evaluations(tmp_path, smoke_config):
    # train.checkpoint_minutes = 60: no epoch end of a seconds-long run is an hour after the last checkpoint, so
    # only the evaluation epoch, the session ends and the last epoch write one; the weights are the ones of a run
    # that checkpoints every epoch, and a run folder resumes with another value (bookkeeping, not identity).
    from model.config import run_identity

    every = smoke_config(train__subsets=2, train__epochs_per_subset=3, train__keep_checkpoints=50,
                         eval__every_epochs=2)
    rare = every.model_copy(update={"train": every.train.model_copy(update={"checkpoint_minutes": 60.0})})
    assert run_identity(rare) == run_identity(every)
    full = train(every, tmp_path / "every", device="cpu", evaluate_fn=lambda net, e: {})
    steps_per_epoch = full.history[0]["steps"]
    assert len(list_checkpoints(tmp_path / "every" / "checkpoints")) == 6  # one per epoch (evaluations: same step)

    first = train(rare, tmp_path / "rare", device="cpu", budget=Budget(epochs=3), evaluate_fn=lambda n, e: {})
    assert first.status == "paused"
    saved = [int(p.stem.split("-")[1]) for p in list_checkpoints(tmp_path / "rare" / "checkpoints")]
    assert saved == [2 * steps_per_epoch, 3 * steps_per_epoch]  # the evaluation at epoch 2, the session's end
    second = train(every, tmp_path / "rare", device="cpu", evaluate_fn=lambda n, e: {})  # resumes with 0
    assert second.status == "done" and second.resumed_from is not None
    _assert_same(_weights(tmp_path / "every"), _weights(tmp_path / "rare"))

    third = train(rare, tmp_path / "rare-once", device="cpu", evaluate_fn=lambda n, e: {})
    saved = [int(p.stem.split("-")[1]) for p in list_checkpoints(tmp_path / "rare-once" / "checkpoints")]
    assert third.status == "done" and [s // steps_per_epoch for s in saved] == [2, 4, 6]  # evaluations, last
    _assert_same(_weights(tmp_path / "every"), _weights(tmp_path / "rare-once"))
    assert [h["epoch"] for h in json.loads((tmp_path / "rare-once" / "history.json").read_text())] == list(range(1, 7))
