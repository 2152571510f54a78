"""The deployments against a real Prefect server: no Docker, everything on 127.0.0.1.

Starts `prefect server start` with its own PREFECT_HOME on a free port, registers the
deployments of prefect.yaml with `landmarks deploy` (work pool, concurrency limits), starts a
process worker, then drives it through the REST API as the UI would: a refresh that grows the
dataset starts a retrain by itself, a second retrain is asked for on demand at the same time,
the training concurrency limit keeps the two trainings from overlapping, and the runs'
artifacts are read back. Everything started is stopped at the end.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote, urlparse

import httpx
import jsonschema
import pytest
import yaml

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    # Its own process group, so stopping it also stops the flow runs it spawned.
    return subprocess.Popen(
        cmd,
        env=env,
        cwd=REPO_ROOT,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _compose() -> dict:
    return yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())


def _native(command: str | list[str]) -> list[str]:
    """A compose service's command with this environment's executables."""
    argv = shlex.split(command) if isinstance(command, str) else list(command)
    return [str(BIN / argv[0]), *argv[1:]]


def test_compose_file_is_valid_and_complete():
    """No Docker engine here: the compose spec's JSON schema, then what the stack needs."""
    from check_jsonschema.builtin_schemas import get_builtin_schema

    compose = _compose()
    schema = get_builtin_schema("vendor.compose-spec")
    errors = list(jsonschema.Draft7Validator(schema).iter_errors(compose))
    assert not errors, [e.message for e in errors]

    services = compose["services"]
    assert {"postgres", "redis", "prefect-server", "prefect-services", "deploy", "worker"} <= set(
        services
    )
    assert "--no-services" in services["prefect-server"]["command"]
    assert services["prefect-services"]["command"] == "prefect server services start"
    for name, svc in services.items():
        for dep in svc.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown {dep}"
        if name != "deploy":  # long-running services report their health
            assert "healthcheck" in svc, f"{name} has no healthcheck"
    assert services["worker"]["build"] == "." and (REPO_ROOT / "Dockerfile").is_file()
    assert "storage:/data/storage" in services["worker"]["volumes"]
    assert "storage" in compose["volumes"]
    assert services["worker"]["depends_on"]["deploy"]["condition"] == (
        "service_completed_successfully"
    )
    # The worker serves the pool the deployments of prefect.yaml are on.
    deployments = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())["deployments"]
    pools = {d["work_pool"]["name"] for d in deployments}
    assert pools == {"landmarks"} and "--pool landmarks" in services["worker"]["command"]
    # The image has the code and prefect.yaml where `landmarks deploy` runs.
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    for needed in ("COPY landmarks", "COPY tasks", "COPY flows", "COPY prefect.yaml"):
        assert needed in dockerfile


class Api:
    """The REST API as the UI and the workers use it.

    A Prefect server on SQLite answers 503 (with Retry-After) when a write meets a busy
    database, e.g. while a flow run writes its states and artifacts. Prefect's own HTTP client
    retries 408/429/502/503 with backoff, Retry-After and jitter (PREFECT_CLIENT_MAX_RETRIES):
    the test talks to the server through that same client, so it sees what production sees.
    """

    def __init__(self, url: str) -> None:
        from prefect.client.base import PrefectHttpxSyncClient

        self.url = url
        self.http = PrefectHttpxSyncClient(base_url=url, timeout=60)

    def healthy(self) -> bool:
        """One probe, no retries: the server is still starting until it answers 200."""
        try:
            return httpx.get(f"{self.url}/health", timeout=10).status_code == 200
        except httpx.TransportError:
            return False

    def post(self, path: str, body: dict | None = None) -> dict | list:
        return self.http.post(path, json=body or {}).json()

    def get(self, path: str) -> dict:
        return self.http.get(path).json()

    def deployment_id(self, name: str) -> str:
        return self.get(f"/deployments/name/{name}")["id"]

    def run_deployment(self, name: str, parameters: dict) -> str:
        run = self.post(
            f"/deployments/{self.deployment_id(name)}/create_flow_run",
            {"parameters": parameters},
        )
        return run["id"]

    def wait(self, flow_run_id: str, timeout_s: float, logs: list[Path]) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            run = self.get(f"/flow_runs/{flow_run_id}")
            if run["state_type"] in TERMINAL:
                return run
            time.sleep(1)
        tails = "\n".join(p.read_text()[-3000:] for p in logs if p.exists())
        pytest.fail(f"flow run {flow_run_id} did not finish in {timeout_s}s:\n{tails}")

    def flow_runs_of(self, deployment: str) -> list[dict]:
        return self.post(
            "/flow_runs/filter",
            {"deployments": {"id": {"any_": [self.deployment_id(deployment)]}}},
        )

    def task_runs_tagged(self, flow_run_ids: list[str], tag: str) -> list[dict]:
        return self.post(
            "/task_runs/filter",
            {"flow_runs": {"id": {"any_": flow_run_ids}}, "task_runs": {"tags": {"all_": [tag]}}},
        )

    def with_subflows(self, flow_run_id: str) -> list[str]:
        ids, todo = [flow_run_id], [flow_run_id]
        while todo:
            children = self.post(
                "/flow_runs/filter", {"flow_runs": {"parent_flow_run_id": {"any_": todo}}}
            )
            todo = [c["id"] for c in children]
            ids += todo
        return ids

    def artifacts(self, flow_run_id: str) -> dict[str, dict]:
        """Artifacts of a run and of its subflows, by key."""
        found = self.post(
            "/artifacts/filter",
            {"flow_runs": {"id": {"any_": self.with_subflows(flow_run_id)}}},
        )
        return {a["key"]: a for a in found if a.get("key")}

    def logs(self, flow_run_id: str) -> str:
        found = self.post("/logs/filter", {"logs": {"flow_run_id": {"any_": [flow_run_id]}}})
        return "\n".join(entry["message"] for entry in found)


@pytest.fixture(scope="module")
def prefect_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Api, dict, Path]]:
    """A Prefect server, the deployments and a process worker, all on 127.0.0.1."""
    home = tmp_path_factory.mktemp("prefect-server-home")
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        # Cached stage results go to the storage volume in production; here, the test's home.
        "PREFECT_LOCAL_STORAGE_PATH": str(home / "results"),
        # The database, chosen explicitly: SQLite in the test's home. Prefect runs it in WAL
        # mode with a 60 s busy timeout, which suits a handful of concurrent flow runs; a write
        # that still meets a busy database is answered 503 + Retry-After and retried by every
        # client (workers, flow runs, this test). docker-compose.yml runs postgres instead.
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
    }
    env.pop("PREFECT_SERVER_EPHEMERAL_ENABLED", None)
    started: list[subprocess.Popen] = []
    server_log, worker_log = home / "server.log", home / "worker.log"
    try:
        started.append(
            _start(
                [
                    str(BIN / "prefect"),
                    "server",
                    "start",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                ],
                env,
                server_log,
            )
        )
        api = Api(url)
        # Generous: a loaded 2-core machine starts the server (migrations included) slowly.
        deadline = time.monotonic() + 300
        while not api.healthy():
            if time.monotonic() > deadline or started[0].poll() is not None:
                pytest.fail(f"prefect server did not start:\n{server_log.read_text()[-3000:]}")
            time.sleep(0.5)
        # The compose file's own commands, run natively: the one-shot deploy, then the worker.
        services = _compose()["services"]
        subprocess.run(
            _native(services["deploy"]["command"]),
            env=env,
            cwd=REPO_ROOT,
            check=True,
            timeout=180,
        )
        worker_env = {**env, "PREFECT_WORKER_WEBSERVER_PORT": str(_free_port())}
        worker_env["PREFECT_WORKER_WEBSERVER_HOST"] = "127.0.0.1"
        started.append(
            _start(
                _native(services["worker"]["command"]) + ["--limit", "3"], worker_env, worker_log
            )
        )
        yield api, env, home
    finally:
        for proc in reversed(started):
            _stop(proc)


def _config(tmp_path: Path, storage: Path, source: Path) -> Path:
    path = tmp_path / "landmarks.toml"
    path.write_text(
        f'storage_dir = "{storage}"\nsource = "{source}"\n'
        "[augment]\nmultiplier = 0.5\nchunk_size = 8\noutput_size = 48\n"
        '[train]\nmodel = "original_cnn"\nepochs = 1\nimage_size = 32\nbatch_size = 16\n'
        "conv_blocks = 1\n"
        "first_filters = 4\ndense_units = 16\n"
    )
    return path


def _interval(task_run: dict) -> tuple[datetime, datetime]:
    return (
        datetime.fromisoformat(task_run["start_time"]),
        datetime.fromisoformat(task_run["end_time"]),
    )


def test_scheduled_refresh_retrains_on_growth_and_on_demand(
    prefect_stack, tmp_path: Path, small_subset: Path
):
    api, _, home = prefect_stack
    logs = [home / "worker.log", home / "server.log"]
    storage = tmp_path / "storage"
    config = _config(tmp_path, storage, small_subset)

    # The weekly deployment has its cron schedule and pydantic parameter schema.
    weekly = api.get(f"/deployments/{api.deployment_id('landmarks-refresh/weekly')}")
    assert [s["schedule"]["cron"] for s in weekly["schedules"]] == ["0 3 * * 1"]
    schema = weekly["parameter_openapi_schema"]
    assert "RefreshParameters" in schema["definitions"]
    assert "retrain_on_growth" in schema["definitions"]["RefreshParameters"]["properties"]

    # A refresh on an empty storage grows it by 100%: it starts a retrain by itself.
    refresh_id = api.run_deployment(
        "landmarks-refresh/weekly",
        {"params": {"config_path": str(config), "retrain_on_growth": 0.2}},
    )
    refresh = api.wait(refresh_id, 900, logs)
    assert refresh["state_type"] == "COMPLETED", api.logs(refresh_id)
    refresh_artifacts = api.artifacts(refresh_id)
    assert refresh_artifacts["images-per-stage"]["type"] == "table"
    # the dedup's steps, each a live progress artifact, all at 100% at the end
    for key in ("dedup-progress", "dedup-search-progress", "dedup-verify-progress"):
        assert refresh_artifacts[key]["type"] == "progress", key
        assert float(refresh_artifacts[key]["data"]) == 100.0, key

    # Retrain on demand, through the API, while the automatic one may still run.
    on_demand_id = api.run_deployment(
        "landmarks-retrain/on-demand", {"params": {"config_path": str(config)}}
    )
    retrains = api.flow_runs_of("landmarks-retrain/on-demand")
    auto = [r for r in retrains if "retrain-on-growth" in r["tags"]]
    assert len(auto) == 1, "the growing refresh did not start a retrain"
    finished = [api.wait(r, 1200, logs) for r in (auto[0]["id"], on_demand_id)]
    for run in finished:
        assert run["state_type"] == "COMPLETED", api.logs(run["id"])

    # The global training limit: the two trainings ran one after the other.
    flow_run_ids = [i for r in finished for i in api.with_subflows(r["id"])]
    trains = api.task_runs_tagged(flow_run_ids, "training")
    assert len(trains) == 2 and all(t["state_type"] == "COMPLETED" for t in trains)
    (a_start, a_end), (b_start, b_end) = sorted(_interval(t) for t in trains)
    assert a_end <= b_start, f"two trainings overlapped: {a_start}-{a_end}, {b_start}-{b_end}"

    # Its artifacts, read back through the API: the report, per-class metrics, file links.
    artifacts = api.artifacts(on_demand_id)
    assert artifacts["training-report"]["type"] == "markdown"
    assert "top" in artifacts["training-report"]["data"].lower()
    assert artifacts["per-class-metrics"]["type"] == "table"
    # A link artifact is stored as markdown, "[name](file:///...)".
    links = {
        key: re.search(r"\((file://[^)]+)\)", artifacts[key]["data"]).group(1)
        for key in ("training-report-file", "confusion-matrix-plot", "training-curves-plot")
    }
    for uri in links.values():
        assert Path(unquote(urlparse(uri).path)).is_file()
    # Stable keys: the UI keeps one history per key, with both runs in it.
    history = api.post("/artifacts/filter", {"artifacts": {"key": {"any_": ["training-report"]}}})
    assert len(history) >= 2
    assert len(list((storage / "runs").glob("*/metrics.json"))) == 2
