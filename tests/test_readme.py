"""The README stays short and true: under its size limit, every relative link and image of README.md and
docs/*.md resolves, every `bench` command in their bash blocks parses with the real CLI, its generated blocks
equal the files a command wrote (scripts/sync_readme.py --check), and CI runs the README's test command."""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from bench.cli import build_parser

REPO = Path(__file__).parent.parent
README = REPO / "README.md"
DOCS = [README, *sorted((REPO / "docs").glob("*.md"))]
README_LIMIT = 12_288  # bytes: the READMEs researchers hold up are 11-18 KB (issue 23)
CLAIMS = "results/reference/claims.md"  # written by `bench claims` (issue 22); its block waits for the file
SHELL_OPERATORS = {";", "&&", "||", "|", "&", ">", ">>", "<", "(", ")"}


def _sync_readme():
    spec = importlib.util.spec_from_file_location("sync_readme", REPO / "scripts" / "sync_readme.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _targets(md: Path) -> list[str]:
    """Every link href and image src of a markdown file, <img src> in raw HTML included."""
    found = []
    for token in MarkdownIt("commonmark").parse(md.read_text()):
        if token.type in ("html_block", "html_inline"):
            found += re.findall(r'<img[^>]*\ssrc="([^"]+)"', token.content)
        for child in [token, *(token.children or [])]:
            if child.type == "link_open":
                found.append(child.attrGet("href"))
            elif child.type == "image":
                found.append(child.attrGet("src"))
            elif child.type == "html_inline":
                found += re.findall(r'<img[^>]*\ssrc="([^"]+)"', child.content)
    return found


def _bench_commands(md: Path) -> list[list[str]]:
    """The argv after `bench` (also `.venv/bin/bench`, `-m bench`) of every command in ```bash blocks."""
    commands = []
    for token in MarkdownIt("commonmark").parse(md.read_text()):
        if token.type != "fence" or token.info.strip() != "bash":
            continue
        for line in token.content.replace("\\\n", " ").splitlines():
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split, lexer.commenters = True, "#"
            commands += _after_bench(list(lexer))
    return commands


def _after_bench(words: list[str]) -> list[list[str]]:
    """The argv of each `bench` command among one shell line's words."""
    commands, argv = [], None
    for i, word in enumerate(words + [";"]):
        if argv is not None and (word in SHELL_OPERATORS or word in ("do", "done", "then", "fi")):
            commands.append(argv)
            argv = None
        elif argv is not None:
            argv.append(word)
        elif Path(word).name == "bench" and (i == 0 or _starts_a_command(words[i - 1])):
            argv = []
    return commands


def _starts_a_command(previous: str) -> bool:
    """Whether the word after `previous` is in command position (not `tox -e bench`, `pip install bench`)."""
    return (previous in SHELL_OPERATORS or previous in ("do", "then") or previous == "-m"
            or re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", previous) is not None)  # after VAR=value


def test_readme_is_under_its_size_limit():
    size = len(README.read_bytes())
    assert size <= README_LIMIT, f"README.md is {size} bytes; move detail to docs/ (limit {README_LIMIT})"


@pytest.mark.parametrize("md", DOCS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_relative_link_and_image_resolves(md):
    text = md.read_text()
    anchors = {_slug(h) for h in re.findall(r"^#+ (.+)$", text, re.M)}
    targets = _targets(md)
    broken = []
    for target in targets:
        if re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        if not path:
            if anchor not in anchors:
                broken.append(target)
        elif not (md.parent / path).exists():
            broken.append(target)
    assert not broken, f"{md.name}: links to nothing: {broken}"
    if md == README:
        assert any(t.endswith(".png") for t in targets), "README.md shows no image"


@pytest.mark.parametrize("md", DOCS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_bench_command_in_a_bash_block_parses(md):
    commands = _bench_commands(md)
    subcommands = set(build_parser()._subparsers._group_actions[0].choices)
    for argv in commands:
        assert argv and argv[0] in subcommands, f"{md.name}: `bench {' '.join(argv)}`: no such subcommand"
        try:
            build_parser().parse_args(argv)
        except SystemExit as e:  # argparse: an unknown flag or a missing argument
            pytest.fail(f"{md.name}: `bench {' '.join(argv)}` does not parse (exit {e.code})")
    if md == README:
        assert {argv[0] for argv in commands} >= {"run", "status", "report", "train"}


def test_the_command_parser_finds_bench_commands_and_rejects_a_wrong_flag(tmp_path):
    md = tmp_path / "x.md"
    md.write_text("```bash\nOMP_NUM_THREADS=1 .venv/bin/bench run a.yaml --seeds 0,1 \\\n  --dry-run   # note\n"
                  "for r in x y; do bench evaluate $r --mmse-samples 4; done\npip install bench; tox -e bench\n"
                  "torchrun --nproc_per_node=2 -m bench train c.yaml\n```\n")
    assert _bench_commands(md) == [["run", "a.yaml", "--seeds", "0,1", "--dry-run"],
                                   ["evaluate", "$r", "--mmse-samples", "4"], ["train", "c.yaml"]]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "a.yaml", "--no-such-flag"])


def test_generated_blocks_equal_the_files_a_command_wrote():
    problems = _sync_readme().sync(README, check=True, allow_missing={CLAIMS})
    assert not problems, "run `python scripts/sync_readme.py`: " + "; ".join(problems)


def test_the_claims_block_is_the_generated_claims_table():
    if not (REPO / CLAIMS).exists():
        pytest.skip(f"{CLAIMS} not written yet (bench claims ... --out {CLAIMS})")
    assert not _sync_readme().sync(README, check=True, allow_missing=set())


def test_sync_fills_a_block_and_check_finds_a_stale_one(tmp_path):
    sync_readme = _sync_readme()
    source = "results/reference/paper/stages.md"
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n<!-- begin: {source} -->\nold table\n<!-- end: {source} -->\nend\n")
    assert sync_readme.sync(readme, check=True, allow_missing=set(), generate=False)
    assert sync_readme.sync(readme, check=False, allow_missing=set(), generate=False) == []
    assert readme.read_text() == (f"intro\n<!-- begin: {source} -->\n{(REPO / source).read_text()}"
                                  f"<!-- end: {source} -->\nend\n")
    assert sync_readme.sync(readme, check=True, allow_missing=set(), generate=False) == []
    readme.write_text(f"<!-- begin: {source} -->\n<!-- end: other.md -->\n")
    with pytest.raises(SystemExit) as e:
        sync_readme.sync(readme, check=True, allow_missing=set(), generate=False)
    assert e.value.code == 2
    spaced = "results/quickstart-ab/summary.md#In one line"  # was silently no marker at all: an empty block
    readme.write_text(f"<!-- begin: {spaced} -->\n<!-- end: {spaced} -->\n")
    with pytest.raises(SystemExit) as e:
        sync_readme.sync(readme, check=True, allow_missing=set(), generate=False)
    assert e.value.code == 2


def test_ci_runs_the_readme_test_command():
    ci = (REPO / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1] == "bash scripts/test.sh"
    assert re.search(r"^bash scripts/test\.sh\b", README.read_text(), re.M)


def test_each_headline_verdict_is_the_one_its_printed_interval_gives():
    """results/reference/headline.md (scripts/sync_readme.py headline()): a comparison says worse or better only
    where the interval it prints excludes 0, in the direction of that interval (KID: lower is better)."""
    lines = [ln for ln in (REPO / "results/reference/headline.md").read_text().splitlines() if " vs " in ln]
    assert lines
    for line in lines:
        m = re.search(r"KID×10³ [+-][\d.e+-]+ \[([+-][\d.e+-]+), ([+-][\d.e+-]+)\], (worse|better|unresolved)", line)
        assert m, line
        lo, hi, word = float(m.group(1)), float(m.group(2)), m.group(3)
        assert word == ("worse" if lo > 0 else "better" if hi < 0 else "unresolved"), line
