"""The one YAML reader of the harness: study files, `bench train` configs and `--set` values.

PyYAML's `safe_load` never runs code (no `!!python` tags), but it reads YAML 1.1, whose rules can hand the
harness another experiment than the one written, without a word. Every document is composed first (nodes
with their line numbers), checked, then constructed with `yaml.SafeLoader`'s constructors. What `safe_load`
gives, and what happens here:
- a key twice in one mapping (`train:` twice in `base:`; also `train.lr` beside a `train:` holding `lr`): the
  last one, the first silently dropped. Here: refused, naming the dotted key and both lines.
- `yes`, `no`, `on`, `off` (any case): True / False (YAML 1.1); `y`, `n`: strings (YAML 1.1 says booleans).
  YAML 1.2 reads them all as strings. Here: refused: write true or false, or quote it.
- `1e-3`, `2E5`, `1.0e3` (no dot, or no exponent sign): the *string* '1e-3'. Here: the float 0.001, as a
  reader (and YAML 1.2) takes it.
- `010`, `0755`, `09` (a leading zero): the octal 8 and 493 (ten in YAML 1.2); the string '09'. Here: refused:
  write the number without the leading zero, or quote it.
- `1:30` (base 60): the integer 90. Here: refused: quote it.
- `!!python/...` and other tags: refused (never run). Here likewise: "YAML tag not allowed".
- anchors `&a`, aliases `*a`, merge keys `<<: *a`: shared values; merged keys, the mapping's own winning. Here:
  accepted (standard YAML; a key written beside `<<` overrides the merged one by design). Each anchor is
  checked once, where it is defined, so nested aliases cost nothing to check.

`true`/`false` (any case), `null`/`~`, `0x1f`, `1_000`, `.inf` and quoted strings keep PyYAML's meaning.
Errors are `model.errors.ConfigError`: one line, "<where>: <problem> at line L", which the CLI prints with
exit status 2 before anything is written.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from model.errors import ConfigError

FLOAT, INT, STR, MERGE = (f"tag:yaml.org,2002:{t}" for t in ("float", "int", "str", "merge"))
# YAML 1.1's booleans other than true/false: PyYAML reads yes/no/on/off, the spec also y/n.
AMBIGUOUS_BOOL = re.compile(r"y|Y|yes|Yes|YES|n|N|no|No|NO|on|On|ON|off|Off|OFF")
# YAML 1.2's float (core schema); PyYAML needs a dot and a signed exponent, so 1e-3 stays a string there.
FLOAT_12 = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
LEADING_ZERO = re.compile(r"[-+]?0[0-9_]+")  # 010: octal in YAML 1.1, ten in YAML 1.2


class YamlReadError(ConfigError):
    """The text is not YAML (a syntax error, an unhashable key)."""


class YamlTagError(YamlReadError):
    """A tag (`!!python/...`, `!foo`) that the safe loader has no constructor for."""


class _Loader(yaml.SafeLoader):
    """SafeLoader; a subclass so that nothing registered here leaks into other users of PyYAML."""


def _line(node: Node) -> int:
    return node.start_mark.line + 1


def _check_scalar(node: ScalarNode, label: str, where: str) -> None:
    """Refuse or reinterpret a plain (unquoted) scalar that YAML 1.1 reads otherwise than written; `label` says
    where it is (`base.train.lr` for a value, `a key in base` for a key)."""
    if node.style is not None:  # quoted or a block scalar: a string, as written
        return
    text = node.value
    at = f"{where}: {label}: {text} at line {_line(node)}"
    if AMBIGUOUS_BOOL.fullmatch(text):
        raise ConfigError(f"{at}: YAML 1.1 reads it as a boolean, YAML 1.2 as a string; "
                          f"write true or false, or quote it ('{text}') for a string")
    if node.tag in (INT, FLOAT) and ":" in text:
        raise ConfigError(f"{at}: YAML 1.1 reads it as a base-60 number "
                          f"({yaml.safe_load(text)}); quote it for a string, or write the number")
    if LEADING_ZERO.fullmatch(text):
        raise ConfigError(f"{at}: a leading zero is octal in YAML 1.1 and decimal in YAML 1.2; "
                          f"write the number without it, or quote it for a string")
    if node.tag == STR and FLOAT_12.fullmatch(text):
        node.tag = FLOAT  # 1e-3 -> 0.001, as a reader (and YAML 1.2) takes it


def _key_text(node: Node) -> str:
    return str(node.value) if isinstance(node, ScalarNode) else f"<{node.id} at line {_line(node)}>"


def _check(node: Node, path: str, where: str, what: str, seen_nodes: set, first_line: dict) -> None:
    """Walk the composed document once (an alias is checked where its anchor is), refusing duplicate keys and
    the scalars `_check_scalar` refuses. `first_line`: full dotted key (`base.train.lr`, `a[1].k`) -> the line
    it was first written on, so `train.lr: 1` beside `train: {lr: 2}` is one key written twice."""
    if id(node) in seen_nodes:
        return
    seen_nodes.add(id(node))
    if isinstance(node, ScalarNode):
        _check_scalar(node, path or what, where)
    elif isinstance(node, SequenceNode):
        for i, item in enumerate(node.value):
            _check(item, f"{path}[{i}]", where, what, seen_nodes, first_line)
    elif isinstance(node, MappingNode):
        for key_node, value_node in node.value:
            if key_node.tag == MERGE:  # `<<: *anchor`: merged keys give way to the mapping's own (YAML spec)
                _check(value_node, f"{path}.<<" if path else "<<", where, what, seen_nodes, {})
                continue
            if isinstance(key_node, ScalarNode):
                _check_scalar(key_node, f"a key in {path}" if path else "a top-level key", where)
            key = f"{path}.{_key_text(key_node)}" if path else _key_text(key_node)
            if key in first_line:
                raise ConfigError(f"{where}: duplicate key '{key}' at line {first_line[key]} and line "
                                  f"{_line(key_node)}: YAML keeps only the last, silently dropping the first; "
                                  f"write it once")
            first_line[key] = _line(key_node)
            _check(value_node, key, where, what, seen_nodes, first_line)


def _mark(e: yaml.MarkedYAMLError) -> str:
    mark = e.problem_mark or e.context_mark
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""


def parse(text: str, where: str, what: str = "study file"):
    """The YAML document in `text` as Python values (None for an empty one), checked as the module docstring
    says. `where` names the source in messages (a file, or `--set 'KEY=VALUE'`); `what` says what it is."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check(node, "", where, what, set(), {})
        return loader.construct_document(node)
    except yaml.constructor.ConstructorError as e:
        if "could not determine a constructor" in str(e.problem):  # e.g. !!python/object/apply: never run
            raise YamlTagError(f"{where}: YAML tag not allowed{_mark(e)} ({e.problem}); a {what} is plain YAML "
                               f"(mappings, lists, strings, numbers)") from None
        raise YamlReadError(f"{where}: YAML error{_mark(e)}: {e.problem}") from None
    except yaml.MarkedYAMLError as e:
        raise YamlReadError(f"{where}: YAML syntax error{_mark(e)}: {e.problem}") from None
    except yaml.YAMLError as e:  # e.g. a control character in the text
        raise YamlReadError(f"{where}: YAML syntax error: {e}") from None
    finally:
        loader.dispose()


def load(path: str | Path, what: str = "study file"):
    """The YAML file at `path`, as `parse` reads it; ConfigError naming the file when it cannot be read."""
    where = str(path)
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise ConfigError(f"{where}: {what} not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{where}: cannot read {what} ({e.__class__.__name__}: {e})") from None
    return parse(text, where, what)
