"""Bad input corpus: every malformed study, flag, folder or checkpoint gives one line naming the file and the
problem, exit status 2, no traceback, and nothing written under the results folder."""

from __future__ import annotations

import copy
import json
import re
import struct
import subprocess
import zlib
from pathlib import Path

import pytest
import torch
from _reliability import REPO, TINY_BASE, bench_cmd, run_args, subprocess_env, tiny_study

from bench import cli
from bench.presets import SCALES
from bench.study import _flatten, resolve_config
from model.checkpoint import FORMAT
from model.ema import make_ema
from model.trainer import build_network


def base_with(**dotted) -> dict:
    """The tiny base with keys set (`train__lr=1` -> `train: {lr: 1}`), inside their section when the base has
    it (a dotted `train.lr` beside a `train:` that holds `lr` too would be a duplicate key), else dotted."""
    base = copy.deepcopy(TINY_BASE)
    for key, value in dotted.items():
        section, _, rest = key.partition("__")
        if isinstance(base.get(section), dict):
            base[section][rest.replace("__", ".")] = value
        else:
            base[key.replace("__", ".")] = value
    return base


def tiny_config(**dotted):
    return resolve_config([("preset", SCALES["smoke"]), ("base", _flatten(TINY_BASE)),
                           ("test", {k.replace("__", "."): v for k, v in dotted.items()})])


def write_checkpoint(path: Path, **dotted) -> Path:
    """A complete palette-bench checkpoint of a freshly initialised tiny network (no training needed)."""
    cfg = tiny_config(**dotted)
    net = build_network(cfg)
    ema = make_ema(net, 0.999)
    torch.save({"format": FORMAT, "config": cfg.model_dump_json(), "net": net.state_dict(), "ema": ema.state_dict(),
                "optimizer": {}, "scheduler": {}, "rng": {}, "progress": {}, "history": []}, path)
    return path


def with_transfer(tmp: Path, checkpoint: Path) -> Path:
    return tiny_study(tmp / "study.yaml", stages={"main": {"transfer_source": str(checkpoint)}})


def truncated_checkpoint(tmp: Path) -> Path:
    good = write_checkpoint(tmp / "good.pt").read_bytes()
    bad = tmp / "truncated.pt"
    bad.write_bytes(good[: len(good) // 2])
    return with_transfer(tmp, bad)


def image_folder(tmp: Path, good: int = 0, corrupt: int = 0) -> Path:
    from PIL import Image

    folder = tmp / "images"
    folder.mkdir(exist_ok=True)
    for i in range(good):
        Image.new("RGB", (20, 20), (i * 10 % 256, 40, 90)).save(folder / f"ok{i:02d}.png")
    for i in range(corrupt):
        (folder / f"bad{i:02d}.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg" * (i + 1))
    return folder


def folder_study(tmp: Path, path) -> Path:
    return tiny_study(tmp / "study.yaml", base=base_with(data__source="folder", data__path=str(path)))


def text(body: str):
    def make(tmp: Path) -> Path:
        (tmp / "study.yaml").write_text(body)
        return tmp / "study.yaml"

    return make


def study(**keys):
    return lambda tmp: tiny_study(tmp / "study.yaml", **keys)


GRID = {"grid": {"eval.steps": [2, 3]}}

# (id, study maker(tmp) -> file, extra CLI args, expected message (regex))
CASES = [
    ("yaml-syntax", text("name: x\nbase: {data: [1, 2\nseeds: [0]\n"), [],
     r"YAML syntax error at line \d+, column \d+"),
    ("yaml-tab-indent", text("name: x\nbase:\n\tdata: {}\n"), [], r"YAML syntax error at line 3"),
    ("not-a-mapping", text("- sweep\n- seeds\n"), [], r"a study file must be a mapping"),
    ("empty-file", text(""), [], r"a study file must be a mapping"),
    ("python-tag", text("name: x\nbase: !!python/object/apply:os.system ['true']\n"), [],
     r"YAML tag not allowed at line 2.*python/object/apply:os\.system"),
    # duplicate keys (issue 24): YAML would keep the last silently; both lines named
    ("duplicate-top-level-key", text("name: x\nseeds: [0]\nbase: {}\nseeds: [1]\n"), [],
     r"duplicate key 'seeds' at line 2 and line 4"),
    ("duplicate-key-in-base", text("name: x\nbase:\n  data: {source: synthetic-faces}\n  train: {subsets: 4}\n"
                                   "  eval: {steps: 2}\n  train: {epochs_per_subset: 2}\n"), [],
     r"duplicate key 'base\.train' at line 4 and line 6"),
    ("duplicate-dotted-and-nested", text("base:\n  train.lr: 0.001\n  train: {lr: 0.002}\n"), [],
     r"duplicate key 'base\.train\.lr' at line 2 and line 3"),
    ("duplicate-key-in-stage", text("stages:\n  a:\n    task.name: inpainting\n    eval.steps: 2\n"
                                    "    task.name: colorization\n"), [],
     r"duplicate key 'stages\.a\.task\.name' at line 3 and line 5"),
    ("duplicate-key-in-scales", text("scales:\n  smoke:\n    train.epochs: 1\n    eval.steps: 2\n"
                                     "    train.epochs: 3\n"), [],
     r"duplicate key 'scales\.smoke\.train\.epochs' at line 3 and line 5"),
    ("duplicate-sweep-axis", text("sweep:\n  grid:\n    eval.steps: [2, 3]\n    eval.steps: [4]\n"), [],
     r"duplicate key 'sweep\.grid\.eval\.steps' at line 3 and line 4"),
    # YAML 1.1 readings a researcher does not expect (bench/yamlio.py)
    ("yaml-yes-boolean", text("name: x\nbase:\n  train: {hflip: yes}\n"), [],
     r"base\.train\.hflip: yes at line 3: YAML 1\.1 reads it as a boolean.*write true or false, or quote it"),
    ("yaml-off-in-a-list", text("sweep:\n  grid: {train.hflip: [on, off]}\n"), [],
     r"sweep\.grid\.train\.hflip\[0\]: on at line 2: YAML 1\.1 reads it as a boolean"),
    ("yaml-octal-number", text("base:\n  train: {batch_size: 010}\n"), [],
     r"base\.train\.batch_size: 010 at line 2: a leading zero is octal in YAML 1\.1"),
    ("yaml-base-60-number", text("base:\n  train: {epochs: 1:30}\n"), [],
     r"base\.train\.epochs: 1:30 at line 2: YAML 1\.1 reads it as a base-60 number \(90\)"),
    ("unknown-top-key", study(sweeep=GRID), [], r"sweeep: unknown key \(did you mean 'sweep'\?\)"),
    ("unknown-config-key", study(base=base_with(train__epoch=3)), [],
     r"base\.train\.epoch: unknown key \(did you mean 'train\.epochs'\?\)"),
    ("unknown-sweep-key", study(sweep={"grid": {"train.lrr": [1e-4]}}), [],
     r"sweep\.train\.lrr: unknown key \(did you mean 'train\.lr'\?\)"),
    ("unknown-section", study(base=base_with(trian__lr=1e-4)), [], r"base\.trian\.lr: unknown key"),
    ("wrong-type-lr", study(base=base_with(train__lr="fast")), [], r"train\.lr: .*number.*\(got 'fast'\)"),
    ("wrong-type-seeds", study(seeds="zero"), [], r"seeds: .*list.*\(got 'zero'\)"),
    ("wrong-type-sweep", study(sweep={"grid": {"eval.steps": 3}}), [], r"sweep\.grid\.eval\.steps: .*list"),
    ("negative-batch", study(base=base_with(train__batch_size=-4)), [],
     r"train\.batch_size: .*greater than or equal to 1 \(got -4\)"),
    ("zero-image-size", study(base=base_with(data__image_size=0)), [],
     r"data\.image_size: .*greater than or equal to 8"),
    ("zero-timesteps", study(base=base_with(diffusion__timesteps=0)), [],
     r"diffusion\.timesteps: .*greater than or equal to 1 \(got 0\)"),
    ("zero-samples", study(base=base_with(eval__n_samples=0)), [], r"eval\.n_samples: .*greater than or equal to 2"),
    ("bad-choice", study(base=base_with(task__name="denoise")), [], r"task\.name: Input should be 'inpainting'"),
    ("bad-metric", study(quality_metric="psnr"), [], r"quality_metric: Input should be 'kid', 'fid' or 'l1'"),
    ("fraction-range", study(base=base_with(data__test_fraction=1.5)), [], r"data\.test_fraction: .*less than 1"),
    ("size-not-divisible", study(base=base_with(data__image_size=18, model__channel_mults=[1, 2, 2])), [],
     r"data\.image_size=18 must be divisible by 4 \(2 \*\* \(len\(model\.channel_mults\) - 1\)\)"),
    ("subsets-larger-than-data", study(base=base_with(train__subsets=100)), [],
     r"train\.subsets=100 is more than the \d+ training images"),
    ("no-seeds", study(seeds=[]), [], r"seeds: List should have at least 1 item"),
    ("duplicate-seed", study(seeds=[0, 0]), [], r"seed 0 appears twice"),
    ("empty-sweep-list", study(sweep={"grid": {"eval.steps": []}}), [],
     r"sweep\.eval\.steps: needs at least one value"),
    ("zip-lengths", study(sweep={"zip": {"eval.steps": [2, 3], "train.lr": [1e-4]}}), [],
     r"sweep\.zip: all lists must have the same length \(got \[1, 2\]\)"),
    ("baseline-no-match", study(sweep=GRID, baseline={"eval.steps": 9}), [],
     r"baseline: \{'eval\.steps': 9\} matches no sweep point"),
    ("baseline-not-axis", study(sweep=GRID, baseline={"train.lr": 1e-4}), [], r"baseline\.train\.lr: not a swept axis"),
    ("unknown-stage", study(stages={"a": {}, "b": {}}, sweep={"grid": {"stage": ["a", "nope"]}}), [],
     r"sweep\.stage: 'nope' is not a stage \(a, b\)"),
    ("transfer-loop", study(stages={"a": {"transfer_source": "b"}, "b": {"transfer_source": "a"}}), [],
     r"transfer_source chain loops \(b -> a -> b\)"),
    ("transfer-unknown", study(stages={"a": {"transfer_source": "elsewhere"}}), [],
     r"transfer_source: 'elsewhere' is neither 'scratch', a stage \(a\) nor a checkpoint file"),
    ("unknown-scale-block", study(scales={"huge": {"train.epochs": 1}}), [], r"scales\.huge: unknown scale"),
    ("name-with-parent", study(name="../escape"), [], r"name '\.\./escape': .*no path separators"),
    ("name-with-slash", study(name="a/b"), [], r"name 'a/b': .*no path separators"),
    ("stage-with-slash", study(stages={"x/../../y": {}}), [], r"stages\.x/\.\./\.\./y: stage names use letters"),
    ("reserved-name", study(name="reference"), [], r"name 'reference' is reserved"),
    ("missing-folder", lambda tmp: folder_study(tmp, tmp / "nowhere"), [],
     r"data\.path: folder '.*nowhere' does not exist"),
    ("empty-folder", lambda tmp: folder_study(tmp, image_folder(tmp)), [], r"data\.path: no images"),
    ("folder-is-a-file", lambda tmp: folder_study(tmp, tmp / "study.yaml"), [],
     r"data\.path: folder .* does not exist"),
    ("only-corrupt-images", lambda tmp: folder_study(tmp, image_folder(tmp, corrupt=12)), [],
     r"none of the \d+ (train|test) images could be read \(corrupt\?\)"),
    ("too-few-images", lambda tmp: folder_study(tmp, image_folder(tmp, good=1, corrupt=3)), [],
     r"none of (its|the) \d+ (train |test )?images (hashed into the|could be read)"),
    ("truncated-checkpoint", truncated_checkpoint, [], r"transfer_source: .*truncated\.pt: not a readable checkpoint"),
    ("missing-checkpoint", lambda tmp: with_transfer(tmp, tmp / "gone.pt"), [], r"gone\.pt: checkpoint not found"),
    ("other-architecture", lambda tmp: with_transfer(tmp, write_checkpoint(tmp / "wide.pt", model__base_channels=16)),
     [], r"wide\.pt: transfer source has another architecture \(model\.base_channels: 16 != 8\)"),
    ("other-prediction", lambda tmp: with_transfer(tmp, write_checkpoint(tmp / "x0.pt", diffusion__prediction="x0")),
     [], r"x0\.pt: transfer source predicts 'x0', this run diffusion\.prediction='eps'.*refused"),
    ("not-a-checkpoint", lambda tmp: with_transfer(tmp, _write(tmp / "notes.pt", b"hello")), [],
     r"notes\.pt: not a readable checkpoint"),
    ("foreign-checkpoint", lambda tmp: with_transfer(tmp, _torch_save(tmp / "foreign.pt", {"w": torch.ones(2)})), [],
     r"foreign\.pt: not a palette-bench checkpoint"),
    ("missing-study-file", lambda tmp: tmp / "nope.yaml", [], r"nope\.yaml: study file not found"),
    ("study-is-a-folder", lambda tmp: tmp, [], r"cannot read study file \(IsADirectoryError"),
    ("binary-study-file", lambda tmp: _write(tmp / "study.yaml", b"\xff\xfe\x00garbage\x81"), [],
     r"cannot read study file|YAML syntax error"),
    ("set-without-equals", study(), ["--set", "train.lr"], r"--set 'train\.lr': expected KEY=VALUE"),
    ("set-unknown-key", study(), ["--set", "train.lrr=1"],
     r"--set\.train\.lrr: unknown key \(did you mean 'train\.lr'\?\)"),
    ("set-bad-value", study(), ["--set", "train.batch_size=[1"],
     r"--set 'train\.batch_size=\[1': value is not valid YAML"),
    ("set-wrong-type", study(), ["--set", "train.epochs=many"], r"train\.epochs: .*integer.*\(got 'many'\)"),
    ("set-yes-boolean", study(), ["--set", "train.hflip=yes"],
     r"--set 'train\.hflip=yes': value: yes at line 1: YAML 1\.1 reads it as a boolean"),
    ("bad-budget", study(), ["--session-budget", "soon"], r"--session-budget 'soon': use minutes"),
    ("bad-seeds", study(), ["--seeds", "0,one"], r"--seeds '0,one': expected comma-separated integers"),
    ("repeated-seeds", study(), ["--seeds", "1,1"], r"--seeds '1,1': seeds must be distinct"),
    ("zero-trials", study(), ["--trials", "0"], r"--trials 0: must be at least 1"),
    ("bad-storage", study(), ["--storage", "bogus"], r"--storage 'bogus': expected a database URL"),
    ("bad-storage-driver", study(), ["--storage", "nosuchdb://x/y"], r"--storage 'nosuchdb://x/y': cannot open"),
]


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _torch_save(path: Path, obj) -> Path:
    torch.save(obj, path)
    return path


def assert_one_line_error(err: str, named: str, pattern: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got:\n{err}"
    assert "Traceback" not in err
    assert lines[0].startswith("error: ") or "error:" in lines[0]
    assert named in lines[0], f"{named!r} not named in: {lines[0]}"
    assert re.search(pattern, lines[0]), f"{pattern!r} not in: {lines[0]}"


def assert_nothing_written(results: Path) -> None:
    assert not results.exists() or not any(results.iterdir()), list(results.rglob("*"))


def test_corpus_is_large_enough():
    assert len(CASES) >= 25 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("make, extra, pattern", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_nothing_written(make, extra, pattern, tmp_path, capsys):
    work = tmp_path / "work"
    work.mkdir()
    study_file = make(work)
    results = tmp_path / "R"
    code = cli.main(run_args(study_file, results, *extra))
    out, err = capsys.readouterr()
    assert code == 2, err
    assert_one_line_error(err, str(study_file), pattern)
    assert_nothing_written(results)


def test_bad_command_line_is_one_line_exit_2(tmp_path, capsys):
    study_file = tiny_study(tmp_path / "study.yaml")
    results = tmp_path / "R"
    assert cli.main(["run", str(study_file), "--scale", "huge", "--results", str(results)]) == 2
    err = capsys.readouterr().err
    assert_one_line_error(err, "--scale", r"invalid choice: 'huge'")
    assert cli.main(["run", str(study_file), "--trials", "many", "--results", str(results)]) == 2
    assert_one_line_error(capsys.readouterr().err, "--trials", r"invalid int value: 'many'")
    assert_nothing_written(results)


@pytest.mark.parametrize("where", ["results-is-a-file", "results-under-a-file"])
def test_unusable_results_folder_is_one_line_exit_2(where, tmp_path, capsys):
    study_file = tiny_study(tmp_path / "study.yaml")
    blocker = tmp_path / "a-file"
    blocker.write_text("keep me")
    results = blocker if where == "results-is-a-file" else blocker / "results"
    assert cli.main(run_args(study_file, results)) == 2
    assert_one_line_error(capsys.readouterr().err, str(results), r"is a file")
    assert blocker.read_text() == "keep me"


def test_bad_input_in_a_real_process(tmp_path):
    """Three bad inputs through the installed entry point, in separate interpreters at once."""
    cases = {
        "unknown-key": (tiny_study(tmp_path / "a.yaml", base=base_with(train__epoch=3)), [],
                        r"base\.train\.epoch: unknown key \(did you mean 'train\.epochs'\?\)"),
        "zero-timesteps": (tiny_study(tmp_path / "b.yaml", base=base_with(diffusion__timesteps=0)), [],
                           r"diffusion\.timesteps: .*greater than or equal to 1"),
        "truncated-checkpoint": (truncated_checkpoint(_mkdir(tmp_path / "c")), [], r"not a readable checkpoint"),
    }
    procs = {}
    for name, (study_file, extra, _) in cases.items():
        results = tmp_path / f"R-{name}"
        procs[name] = (subprocess.Popen(bench_cmd(run_args(study_file, results, *extra)), cwd=REPO,
                                        env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True), results)
    for name, (proc, results) in procs.items():
        out, err = proc.communicate(timeout=120)
        study_file, _, pattern = cases[name]
        assert proc.returncode == 2, (name, err)
        assert_one_line_error(err, str(study_file), pattern)
        assert_nothing_written(results)


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def test_messages_name_the_key_in_config_json_too(tmp_path, capsys):
    """`bench train CONFIG` (one run) reports bad keys the same way."""
    config = tmp_path / "one.yaml"
    config.write_text(json.dumps({"train": {"epoch": 2}}))
    assert cli.main(["train", str(config), "--scale", "smoke", "--results", str(tmp_path / "R")]) == 2
    assert_one_line_error(capsys.readouterr().err, str(config), r"train\.epoch: unknown key")
    assert_nothing_written(tmp_path / "R")


def test_duplicate_keys_in_a_train_config_name_both_lines(tmp_path, capsys):
    """`bench train CONFIG` reads YAML as study files do (bench/yamlio.py): a repeated section is refused."""
    config = tmp_path / "one.yaml"
    config.write_text("train:\n  epochs: 2\ndata: {source: synthetic-faces}\ntrain:\n  lr: 0.001\n")
    assert cli.main(["train", str(config), "--scale", "smoke", "--results", str(tmp_path / "R")]) == 2
    assert_one_line_error(capsys.readouterr().err, str(config), r"duplicate key 'train' at line 1 and line 4")
    assert_nothing_written(tmp_path / "R")


def bomb_png(path: Path, side: int = 20000) -> Path:
    """A valid 1-bit grey PNG of side x side pixels (over Pillow's decompression-bomb limit of 2 x 89.5 M
    pixels) that takes a few KB: every row is zeros, so zlib shrinks it ~1000-fold."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row, z = bytes(1 + side // 8), zlib.compressobj(9)  # filter byte 0 + side bits
    pixels = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", pixels) + chunk(b"IEND", b""))
    return path


def test_bench_fid_with_a_decompression_bomb_is_one_line_exit_2(tmp_path, capsys):
    """Issue 24: `bench fid` read each next file's header itself (PIL.Image.DecompressionBombError, a
    traceback); every file now goes through the one decoder (model/data/decode.py)."""
    a = image_folder(tmp_path, good=3)
    bomb = bomb_png(a / "ok00-huge.png")  # sorts second: the old look-ahead at the next file's size hit it
    assert bomb.stat().st_size < 100_000
    b = image_folder(_mkdir(tmp_path / "b"), good=3)
    assert cli.main(["fid", str(a), str(b), "--device", "cpu"]) == 2
    out, err = capsys.readouterr()
    assert_one_line_error(err, str(bomb), r"unreadable image \(Image size \(400000000 pixels\) exceeds limit")
    assert out == ""


def test_a_decompression_bomb_in_a_data_source_is_skipped_and_counted(tmp_path):
    from model.config import DataConfig
    from model.data import load_split

    folder = image_folder(tmp_path, good=12)
    bomb_png(folder / "huge.png")
    cfg = DataConfig(source="folder", path=str(folder), image_size=16, cache_dir=str(tmp_path / "cache"))
    train, test = load_split(cfg, "train"), load_split(cfg, "test")
    assert len(train) + len(test) == 12
    assert train.stats["skipped"] + test.stats["skipped"] == 1
