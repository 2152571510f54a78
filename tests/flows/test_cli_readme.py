"""The command line reads the same everywhere: the README's command table is `landmarks --help`,
and an option means one thing in every command that has it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from flows.cli import app

README = Path(__file__).resolve().parents[2] / "README.md"
runner = CliRunner()
GROUP = typer.main.get_command(app)
COMMANDS = sorted(GROUP.commands)


def flat(text: str) -> str:
    """Help text as words, without Rich's panel borders and line wrapping."""
    return " ".join(text.replace("│", " ").split())


def readme_table() -> dict[str, str]:
    """``command -> summary`` from the first table of the README's "Command line" section."""
    text = README.read_text()
    section = text[text.index("\n## Command line\n") :]
    section = section[: section.index("\n## ", 1)]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        match = re.fullmatch(r"\| `landmarks ([a-z-]+)` \| (.+) \|", line.strip())
        if match:
            assert match[1] not in rows, f"{match[1]} is twice in the README's command table"
            rows[match[1]] = match[2]
    assert rows, "the README's Command line section has no command table"
    return rows


def help_table() -> dict[str, str]:
    """``command -> summary`` as `landmarks --help` prints them (a wrapped row joined)."""
    text = runner.invoke(app, ["--help"], env={"COLUMNS": "300"}).output
    panel = text[text.index("Commands") : text.index("╰", text.index("Commands"))]
    rows: dict[str, str] = {}
    name = ""
    for line in panel.splitlines()[1:]:
        match = re.fullmatch(r"│ (\S+)? +(.+?) *│", line.strip())
        if match:
            name = match[1] or name
            rows[name] = f"{rows[name]} {match[2]}" if not match[1] else match[2]
    return rows


def test_readme_command_table_is_the_help():
    readme, helped = readme_table(), help_table()
    assert sorted(helped) == COMMANDS
    assert sorted(set(helped) - set(readme)) == [], "commands missing from the README's table"
    assert sorted(set(readme) - set(helped)) == [], "README table rows with no such command"
    for name in COMMANDS:
        assert readme[name] == helped[name], name
    # The table keeps the order of `landmarks --help`.
    assert list(readme) == list(helped)


@pytest.mark.parametrize("name", COMMANDS)
def test_each_command_help_opens_with_its_summary(name: str):
    text = flat(runner.invoke(app, [name, "--help"], env={"COLUMNS": "300"}).output)
    assert readme_table()[name] in text
    # One sentence, short enough for one row of `landmarks --help` on an 100-column terminal.
    assert len(readme_table()[name]) <= 90


def _options() -> list[tuple[str, typer.core.TyperOption]]:
    found = []
    for name in COMMANDS:
        command = GROUP.commands[name]
        found += [(name, p) for p in command.params if isinstance(p, typer.core.TyperOption)]
    return found


def test_json_takes_a_path_with_dash_for_stdout_in_every_command():
    json_options = [(name, p) for name, p in _options() if "--json" in p.opts]
    assert {name for name, _ in json_options} >= {
        "crawl",
        "dedup",
        "evaluate",
        "predict",
        "suspects",
        "verify",
    }
    for name, option in json_options:
        assert not option.is_flag, f"{name} --json is a switch; it takes a PATH"
        assert option.help.endswith("as JSON to PATH ('-': standard output)."), name


def test_shared_options_have_one_name_and_one_meaning():
    by_flag: dict[str, set[tuple[str, ...]]] = {}
    helps: dict[str, set[str]] = {}
    for _, option in _options():
        for flag in ("--config", "--storage"):
            if flag in option.opts:
                by_flag.setdefault(flag, set()).add(tuple(sorted(option.opts)))
                helps.setdefault(flag, set()).add(option.help or "")
        if "--workers" in option.opts:
            assert (option.help or "").endswith("processes (0: one per CPU)."), option.help
    assert by_flag == {"--config": {("--config", "-c")}, "--storage": {("--storage",)}}
    assert all(len(h) == 1 for h in helps.values()), helps
    # The exit codes are said once, at the end of `landmarks --help` (and in the README).
    text = flat(runner.invoke(app, ["--help"], terminal_width=100).output)
    assert "Exit codes: 0 done; 1 started work failed" in text
    for name in COMMANDS:
        sub = flat(runner.invoke(app, [name, "--help"], terminal_width=100).output)
        assert "Exit 0" not in sub and "exit code 2" not in sub, name


def test_json_dash_prints_only_json_on_stdout(tmp_path: Path, small_subset: Path):
    tree = tmp_path / "tree"
    for name in ("petra", "taj_mahal"):
        (tree / name).mkdir(parents=True)
        for photo in sorted((small_subset / name).iterdir())[:3]:
            (tree / name / photo.name).symlink_to(photo.resolve())
    (tree / "petra" / "copy.jpg").symlink_to(next((tree / "petra").iterdir()).resolve())
    result = runner.invoke(
        app, ["dedup", str(tree), "--json", "-", "--html", str(tmp_path / "r.html")]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [len(g["duplicates"]) for g in data["groups"]] == [1]
    assert "1 groups" in result.stderr and "report: file://" in result.stderr
    # No file named '-' appears anywhere.
    assert not Path("-").exists() and not (tmp_path / "-").exists()
