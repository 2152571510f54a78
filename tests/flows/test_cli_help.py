"""Every command's --help renders and says what the code does."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from flows.cli import app
from landmarks.config import CrawlConfig

runner = CliRunner()


def flat(text: str) -> str:
    """Help text as words, without Rich's panel borders and line wrapping."""
    return " ".join(text.replace("│", " ").split())


COMMANDS = sorted(typer.main.get_command(app).commands)


@pytest.mark.parametrize("name", COMMANDS)
def test_every_help_renders_without_losing_text(name: str):
    result = runner.invoke(app, [name, "--help"], terminal_width=100)
    assert result.exit_code == 0 and "Usage" in result.output, result.output
    # Rich markup must not eat bracketed words: "the  section" is "[train]" lost.
    assert not re.search(r"\w  \w", result.output.replace("│", " ").strip()), result.output


def test_summaries_flow_as_whole_sentences():
    text = runner.invoke(app, ["--help"], terminal_width=100).output
    rows = [line.strip("│ ").rstrip() for line in text.splitlines() if line.startswith("│ ")]
    for row in rows:
        # A row ending in a lone word carried over to a short next line was a hard break.
        assert not re.fullmatch(r"\S+ +(and|of|that|skips|copies|crawl|photos|Then)", row), row
    # Each summary is the command's first paragraph: one sentence, the details in its --help.
    assert "Serve the review page: keep, remove or relabel the suspects." in text
    assert "Decisions are saved at once in" not in text


def test_train_help_keeps_the_config_section_name():
    text = flat(runner.invoke(app, ["train", "--help"]).output)
    assert "in the [train] section of --config" in text


def test_crawl_help_names_the_default_engine_order():
    text = flat(runner.invoke(app, ["crawl", "--help"]).output)
    default = ", ".join(CrawlConfig().engines)
    assert f"(default: {default})" in text
    # The prose names the default engines in their order.
    engines = text[text.index("Engines:") :]
    places = [engines.index(e.capitalize()) for e in CrawlConfig().engines]
    assert places == sorted(places), engines[:400]
