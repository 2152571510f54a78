"""`landmarks serve` after `landmarks deploy` on one real Prefect server: a retrain asked for
with `landmarks retrain --wait` runs in the served process (no '<repo>/None' crash), prints the
training run, its metrics and where to follow it; Ctrl-C (SIGINT to the process group) stops
`serve` promptly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from flows.cli import app
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=20)


def test_serve_after_deploy_runs_a_retrain_and_stops_on_ctrl_c(tmp_path: Path, small_subset: Path):
    storage = tmp_path / "s"
    tiny = tmp_path / "tiny.toml"  # the original CNN, tiny: the test is about serving
    tiny.write_text('[train]\nmodel = "original_cnn"\nconv_blocks = 1\nfirst_filters = 4\n')
    runner = CliRunner()
    for step in (["crawl", "--source", str(small_subset)], ["clean"], ["dedup"], ["split"]):
        result = runner.invoke(app, [*step, "--storage", str(storage)])
        assert result.exit_code == 0, result.output
    home = tmp_path / "home"
    url = f"http://127.0.0.1:{_free_port()}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": url,
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "PREFECT_LOCAL_STORAGE_PATH": str(home / "results"),
    }
    started: list[subprocess.Popen] = []

    def start(*argv: str, log: str, sigint_ignored: bool = False) -> subprocess.Popen:
        proc = subprocess.Popen(
            list(argv),
            env=env,
            cwd=REPO_ROOT,
            stdout=(home / log).open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # As a background job of a shell script starts it: SIGINT ignored on entry.
            preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
            if sigint_ignored
            else None,
        )
        started.append(proc)
        return proc

    home.mkdir()
    try:
        port = url.split(":")[2].split("/")[0]
        server = start(str(BIN / "prefect"), "server", "start", "--port", port, log="server.log")
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, "no server"
            time.sleep(0.5)
        landmarks = [sys.executable, "-m", "flows.cli"]
        subprocess.run([*landmarks, "deploy"], env=env, cwd=REPO_ROOT, check=True, timeout=240)
        serve = start(*landmarks, "serve", log="serve.log", sigint_ignored=True)
        # Ready when serve has registered the retrain deployment for itself (no work pool).
        deadline = time.monotonic() + 180
        while True:
            answer = httpx.get(f"{url}/deployments/name/landmarks-retrain/on-demand")
            if answer.status_code == 200 and answer.json()["work_pool_name"] is None:
                break
            assert time.monotonic() < deadline and serve.poll() is None, "serve did not start"
            time.sleep(0.5)
        retrain = subprocess.run(
            [
                *landmarks,
                "retrain",
                "--wait",
                "--config",
                str(tiny),
                "--storage",
                str(storage),
                "--epochs",
                "1",
                "--image-size",
                "32",
            ],
            env=env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=400,
        )
        served_log = (home / "serve.log").read_text()
        assert retrain.returncode == 0, retrain.stderr + served_log[-3000:]
        assert "/None" not in served_log
        out = retrain.stdout
        assert ": Completed" in out and "follow it: " in out
        run_ids = [p.name for p in (storage / "runs").iterdir() if (p / "run.json").exists()]
        assert len(run_ids) == 1
        assert f"run {run_ids[0]}: test top-1 " in out and "report: " in out

        os.killpg(serve.pid, signal.SIGINT)
        serve.wait(timeout=15)  # raises TimeoutExpired if Ctrl-C did not stop it
    finally:
        for proc in reversed(started):
            _stop(proc)
