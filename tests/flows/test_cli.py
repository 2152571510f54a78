import os
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from flows.cli import app

runner = CliRunner()


def test_every_command_has_help():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in [
        "run",
        "refresh",
        "crawl",
        "clean",
        "dedup",
        "split",
        "augment",
        "train",
        "evaluate",
    ]:
        assert command in result.output
        sub = runner.invoke(app, [command, "--help"])
        assert sub.exit_code == 0 and "Usage" in sub.output


def test_augment_help_explains_presets_targets_and_resume():
    text = runner.invoke(app, ["augment", "--help"], terminal_width=200).output
    for word in ["original", "landmark", "--target-per-class", "--multiplier", "Resume"]:
        assert word in text


def test_web_source_without_network_fails_fast_with_a_way_out(tmp_path: Path):
    # The tests run without internet; the check must say so quickly and point to --source DIR.
    env = {**os.environ, "LANDMARKS_STORAGE_DIR": str(tmp_path / "s")}
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "flows.cli", "run", "--source", "web"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    elapsed = time.monotonic() - start
    assert proc.returncode == 2
    assert "--source DIR" in proc.stderr and "make run SOURCE=" in proc.stderr
    assert elapsed < 60
    assert not (tmp_path / "s" / "raw").exists()


def test_stage_commands_on_a_real_subset(tmp_path: Path, small_subset: Path):
    storage = ["--storage", str(tmp_path / "s")]
    steps = [
        ["crawl", "--source", str(small_subset)],
        ["clean"],
        ["dedup"],
        ["split"],
        ["augment", "--multiplier", "0.25", "--preset", "landmark"],
    ]
    for step in steps:
        result = runner.invoke(app, [*step, *storage])
        assert result.exit_code == 0, (step, result.output)
    assert (tmp_path / "s" / "splits" / "split.jsonl").is_file()
    assert list((tmp_path / "s" / "augmented").glob("*/chunk-00000/chunk.json"))
