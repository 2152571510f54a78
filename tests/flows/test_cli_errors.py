"""What a person meets on a mistake: one `error:` line, exit code 2 (usage) or 1 (failure), no
traceback unless -v. Real processes, so stderr is what a terminal shows."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from flows.cli import app
from landmarks.storage import exclusive_lock
from tests.conftest import REPO_ROOT

# Parameters that name an output or the storage root: a wrong value there is not a wrong input.
NOT_INPUTS = {"storage", "out", "out_dir", "json_out", "html_out", "config"}


def landmarks(
    *args: str, env: dict[str, str] | None = None, timeout: int = 300
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


def assert_one_error(proc: subprocess.CompletedProcess, code: int | None = None) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0, proc.stderr
    if code is not None:
        assert proc.returncode == code, proc.stderr
    assert len(lines) <= 3, proc.stderr
    assert "Traceback" not in proc.stderr and "pydantic" not in proc.stderr
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


def wrong_path_args(command: typer.core.TyperCommand, storage: Path) -> tuple[list[str], dict]:
    """A nonexistent path for every input path of the command (required arguments get one
    too); a command without any gets a nonexistent $LANDMARKS_CONFIG."""
    args: list[str] = []
    inputs = 0
    for param in command.params:
        is_path = param.type_descriptor.annotation is Path or param.name == "source"
        if param.name == "storage":
            args += ["--storage", str(storage)]
        elif (is_path and param.name not in NOT_INPUTS) or param.required:
            value = f"/nonexistent/{param.name}" if is_path else "/nonexistent/x.jpg"
            inputs += 1
            if type(param).__name__ == "TyperArgument":
                args.append(value)
            else:
                args += [param.opts[0], value]
    env = {} if inputs else {"LANDMARKS_CONFIG": "/nonexistent/config.toml"}
    return args, env


COMMANDS = sorted(typer.main.get_command(app).commands)


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_with_a_wrong_path_says_so_in_one_line(name: str, tmp_path: Path):
    command = typer.main.get_command(app).commands[name]
    args, env = wrong_path_args(command, tmp_path / "storage")
    proc = landmarks(name, *args, env=env, timeout=240)
    line = assert_one_error(proc)
    assert "/nonexistent/" in line, (args, line)


def test_the_commands_are_all_covered():
    # New commands are picked up from the app itself.
    assert {"run", "crawl", "train", "serve", "deploy", "retrain"} <= set(COMMANDS)


def test_verbose_shows_the_traceback():
    proc = landmarks("-v", "runs", env={"LANDMARKS_CONFIG": "/nonexistent/c.toml"})
    assert proc.returncode == 2 and "Traceback" in proc.stderr
    assert "error: config file not found: /nonexistent/c.toml" in proc.stderr


def test_unknown_settings_and_bad_values_are_one_line_each(tmp_path: Path):
    config = tmp_path / "c.toml"
    config.write_text("[trian]\nepochs = 2\n")
    storage = ["--storage", str(tmp_path / "s")]
    line = assert_one_error(landmarks("train", "--config", str(config), *storage), 2)
    assert line == f"error: unknown setting 'trian' in config file {config} (did you mean 'train'?)"
    line = assert_one_error(landmarks("train", "--epochs", "0", *storage), 2)
    assert line == "error: train.epochs must be >= 1 (got 0)"
    proc = landmarks("runs", *storage, env={"LANDMARKS_TRAIN__EPOCS": "2"})
    assert "did you mean 'LANDMARKS_TRAIN__EPOCHS'" in assert_one_error(proc, 2)
    line = assert_one_error(landmarks("augment", "--output-size", "8", *storage), 2)
    assert line == "error: augment.output_size must be >= 16 (got 8)"
    # 0 workers is accepted (one per CPU, as for dedup): the next problem is the missing split.
    line = assert_one_error(landmarks("augment", "--workers", "0", *storage), 2)
    assert "no split manifest" in line


def test_a_busy_storage_is_said_before_any_server_starts(tmp_path: Path, small_subset: Path):
    storage = tmp_path / "s"
    with exclusive_lock(storage, "refresh"):
        proc = landmarks("refresh", "--source", str(small_subset), "--storage", str(storage))
    line = assert_one_error(proc, 1)
    assert "is busy: a refresh is already running" in line
    assert "temporary server" not in proc.stderr


def test_typos_in_sources_trials_and_models(tmp_path: Path):
    storage = ["--storage", str(tmp_path / "s")]
    typo = str(tmp_path / "subsett")
    for command in ("run", "crawl"):
        proc = landmarks(command, "--source", typo, *storage)
        assert assert_one_error(proc, 2).startswith(f"error: source folder not found: {typo}")
        assert "temporary server" not in proc.stderr
    proc = landmarks("sweep", "configs/original_table.toml", "--only", "try_99", *storage)
    assert "no trials named ['try_99']" in assert_one_error(proc, 2)
    proc = landmarks("export", "--model", "nope.keras", "--out", str(tmp_path / "e"))
    assert assert_one_error(proc, 2) == "error: model nope.keras not found"


def test_an_error_inside_a_flow_ends_as_one_error_line(tmp_path: Path):
    # The folder exists (so the flow starts) but holds no class folders: the flow fails.
    empty = tmp_path / "photos"
    empty.mkdir()
    proc = landmarks("refresh", "--source", str(empty), "--storage", str(tmp_path / "s"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        f"error: {empty} holds no class folders with files; expected DIR/<class>/<image files>"
    ]
    assert len(proc.stderr.splitlines()) <= 10, proc.stderr


def test_suspects_says_where_it_wrote(tmp_path: Path, small_subset: Path):
    out = tmp_path / "suspects.json"
    proc = landmarks("suspects", str(small_subset), "--json", str(out), "--top", "1")
    assert proc.returncode == 0, proc.stderr
    assert f"json: {out}" in proc.stdout and out.is_file()
