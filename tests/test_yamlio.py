"""bench/yamlio.py: what the one YAML reader accepts and how it reads it (the refusals are in
test_bad_input.py's table: duplicate keys, yes/no/on/off, octal-looking and base-60 numbers)."""

from __future__ import annotations

import pytest

from bench import yamlio
from bench.study import load_study, parse_sets
from model.errors import ConfigError


def test_exponents_without_a_dot_are_floats_as_written():
    """PyYAML reads `1e-3` (no dot) and `1.0e3` (no exponent sign) as strings; here they are numbers."""
    got = yamlio.parse("a: 1e-3\nb: 2E5\nc: 1.0e3\nd: -5e-1\ne: '1e-3'\nf: 2.0e-4\n", "f.yaml")
    assert got == {"a": 0.001, "b": 200000.0, "c": 1000.0, "d": -0.5, "e": "1e-3", "f": 0.0002}
    assert all(isinstance(got[k], float) for k in "abcdf")
    assert parse_sets(["train.lr=1e-4"]) == {"train.lr": 0.0001}


def test_a_swept_exponent_is_one_float_point(tmp_path):
    """The sweep point (and so the trial key and the report's label) holds the number, not the text."""
    path = tmp_path / "s.yaml"
    path.write_text("base: {data: {source: synthetic-faces}}\nsweep:\n  grid: {train.lr: [1e-4, 2e-4]}\n"
                    "baseline: {train.lr: 1e-4}\n")
    study = load_study(path, "smoke")
    assert [t.point["train.lr"] for t in study.trials] == [0.0001, 0.0002]
    assert study.trials[0].run.config.train.lr == 0.0001 and study.trials[0].is_baseline


def test_plain_yaml_keeps_its_meaning():
    text = "t: true\nf: False\nnul: null\nm: ~\nx: 0x1f\nu: 1_000\ni: .inf\nq: 'yes'\nz: 0\ns: 1.5\nneg: -3\n"
    got = yamlio.parse(text, "f.yaml")
    assert got == {"t": True, "f": False, "nul": None, "m": None, "x": 31, "u": 1000, "i": float("inf"),
                   "q": "yes", "z": 0, "s": 1.5, "neg": -3}
    assert yamlio.parse("", "f.yaml") is None


def test_anchors_aliases_and_merge_keys_are_accepted(tmp_path):
    """A shared block written once; keys beside `<<` override the merged ones (YAML's merge-key rule)."""
    text = ("common: &c {task.name: inpainting, eval.steps: 2}\n"
            "a: *c\n"
            "b: {<<: *c, eval.steps: 3}\n")
    got = yamlio.parse(text, "f.yaml")
    assert got["a"] == {"task.name": "inpainting", "eval.steps": 2}
    assert got["b"] == {"task.name": "inpainting", "eval.steps": 3}
    with pytest.raises(ConfigError, match=r"f\.yaml: duplicate key 'b\.eval\.steps' at line 3 and line 3"):
        yamlio.parse(text.replace("eval.steps: 3}", "eval.steps: 3, eval.steps: 4}"), "f.yaml")


def test_nested_aliases_are_checked_once_not_expanded():
    """A 'billion laughs' document: each anchor is checked where it is defined, so this stays instant."""
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 10)]
    got = yamlio.parse("\n".join(lines) + "\n", "f.yaml")
    assert got["l9"][0][0][0][0][0][0][0][0][0] == ["x"] * 9


def test_duplicates_anywhere_name_the_dotted_key_and_both_lines():
    text = "a:\n  - {k: 1}\n  - {k: 2, j: 3,\n     k: 4}\n"
    with pytest.raises(ConfigError, match=r"^f\.yaml: duplicate key 'a\[1\]\.k' at line 3 and line 4: YAML keeps"):
        yamlio.parse(text, "f.yaml")
    yamlio.parse("a: [{k: 1}, {k: 2}]\nb: {k: 1}\nk: 0\n", "f.yaml")  # the same name in other mappings: fine


@pytest.mark.parametrize("value", ["yes", "No", "ON", "off", "y", "N"])
def test_yaml_11_booleans_in_keys_and_values_are_refused(value):
    with pytest.raises(ConfigError, match=rf"x: {value} at line 2: YAML 1\.1 reads it as a boolean"):
        yamlio.parse(f"a: 1\nx: {value}\n", "f.yaml")
    with pytest.raises(ConfigError, match=rf"a key in a: {value} at line 1"):
        yamlio.parse(f"a: {{{value}: 1}}\n", "f.yaml")
    assert yamlio.parse(f"x: '{value}'\n", "f.yaml") == {"x": value}  # quoted: the string


def test_unreadable_and_tagged_files(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.yaml: config not found"):
        yamlio.load(tmp_path / "nope.yaml", "config")
    (tmp_path / "t.yaml").write_text("a: !!python/name:os.system\n")
    with pytest.raises(yamlio.YamlTagError, match=r"t\.yaml: YAML tag not allowed at line 1, column 4"):
        yamlio.load(tmp_path / "t.yaml")
    (tmp_path / "two.yaml").write_text("a: 1\n---\nb: 2\n")
    with pytest.raises(yamlio.YamlReadError, match=r"two\.yaml: YAML syntax error at line 2"):
        yamlio.load(tmp_path / "two.yaml")
