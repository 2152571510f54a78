"""Deployments: a scheduled dataset refresh, retraining on demand, and the whole pipeline.

The three entry points below take pydantic models as parameters, so a run started from the
Prefect UI gets a validated form with a description for every field. They compose the same
flows the CLI runs (``flows.refresh``, ``flows.train``), so a deployment and ``landmarks run``
do the same work.

Two ways to run them (README, "Operating it"):

* ``prefect deploy --all`` reads ``prefect.yaml`` and registers them on a work pool; a
  ``prefect worker`` runs them. ``landmarks deploy`` does that after making sure the work pool
  and the concurrency limits exist.
* ``landmarks serve`` registers and runs them in one long-lived process, no pool or worker.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Literal

from prefect import flow
from prefect.logging import get_run_logger
from pydantic import BaseModel, ConfigDict, Field

from flows import options as opt
from flows.refresh import DEFAULT_CRAWL_CONCURRENCY
from flows.refresh import refresh as refresh_flow
from landmarks.config import Settings, check_keys, deep_merge, load_settings
from tasks import _ui

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
WORK_POOL = "landmarks"
REFRESH_CRON = "0 3 * * 1"  # Mondays 03:00
RETRAIN_DEPLOYMENT = "landmarks-retrain/on-demand"
# Tag concurrency limits the deployments rely on: `training` makes two trainings queue instead
# of sharing the machine; `crawl` caps per-class crawl tasks across every running refresh.
CONCURRENCY_LIMITS = {"training": 1, "crawl": DEFAULT_CRAWL_CONCURRENCY}


# --------------------------------------------------------------------------- parameters


class DataParameters(BaseModel):
    """Where the data lives and comes from; unset fields fall back to the config file, the
    ``LANDMARKS_*`` environment, then the defaults."""

    # A mistyped parameter is refused, never ignored (same for every model below).
    model_config = ConfigDict(extra="forbid")

    config_path: str | None = Field(
        default=None, description="TOML config file (same sections as `landmarks --config`)."
    )
    storage_dir: str | None = Field(
        default=None, description="Storage root shared by every stage (default ./storage)."
    )
    source: str | None = Field(
        default=None,
        description="'web' to crawl the image search engines, or a folder DIR/CLASS/IMAGES.",
    )
    max_per_class: int | None = Field(default=None, ge=1, description="Images to crawl per class.")
    augment_multiplier: float | None = Field(
        default=None, ge=0, description="Augmented copies per train image."
    )
    augment_target_per_class: int | None = Field(
        default=None, ge=1, description="Augment every class up to this many train images."
    )
    overrides: dict[str, Any] = Field(
        default_factory=dict,
        description='Any other settings, nested like the TOML file, e.g. {"dedup": '
        '{"threshold": 8}}.',
    )


class TrainingParameters(BaseModel):
    """Training knobs most often changed for a retrain; the rest via the config file."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(default=None, description="Model name (see `landmarks train`).")
    epochs: int | None = Field(default=None, ge=1)
    image_size: int | None = Field(default=None, ge=16, description="Model input side in px.")
    batch_size: int | None = Field(default=None, ge=1)
    learning_rate: float | None = Field(default=None, gt=0)


class RunnerParameters(BaseModel):
    """How the fan-out stages (per-class crawl, augmentation chunks) run."""

    model_config = ConfigDict(extra="forbid")

    task_runner: Literal["threads", "dask"] = Field(
        default="threads",
        description="'threads': a thread pool in the flow process (augmentation uses its own "
        "process pool). 'dask': one task per augmentation chunk and per class on a Dask cluster.",
    )
    crawl_concurrency: int = Field(
        default=DEFAULT_CRAWL_CONCURRENCY, ge=1, le=32, description="Classes crawled at once."
    )
    dask_address: str | None = Field(
        default=None,
        description="Scheduler of an existing Dask cluster, e.g. tcp://dask-scheduler:8786. "
        "Unset: a temporary local cluster.",
    )
    dask_workers: int = Field(default=2, ge=1, description="Workers of the temporary cluster.")


class RefreshParameters(DataParameters):
    runner: RunnerParameters = Field(default_factory=RunnerParameters)
    retrain_on_growth: float | None = Field(
        default=0.2,
        ge=0,
        description="Start a retrain when the refresh grew the dataset (kept images) by more "
        "than this share; 0.2 = 20%. A first refresh counts as 100%. Unset: never.",
    )
    retrain_deployment: str = Field(
        default=RETRAIN_DEPLOYMENT,
        description="Deployment started on growth; without it the retrain runs in this flow.",
    )
    training: TrainingParameters = Field(
        default_factory=TrainingParameters, description="Used by the retrain it starts."
    )


class RetrainParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    config_path: str | None = Field(default=None, description="TOML config file.")
    storage_dir: str | None = Field(default=None, description="Storage root (default ./storage).")
    training: TrainingParameters = Field(default_factory=TrainingParameters)
    run_id: str | None = Field(
        default=None, description="Resume this run (after a crash) instead of starting a new one."
    )
    overrides: dict[str, Any] = Field(
        default_factory=dict, description="Any other settings, nested like the TOML file."
    )


class PipelineParameters(DataParameters):
    runner: RunnerParameters = Field(default_factory=RunnerParameters)
    training: TrainingParameters = Field(default_factory=TrainingParameters)


# Defaults as module constants: a model instance as default keeps the UI form flat.
DEFAULT_REFRESH = RefreshParameters()
DEFAULT_RETRAIN = RetrainParameters()
DEFAULT_PIPELINE = PipelineParameters()


# --------------------------------------------------------------------------- helpers


def data_overrides(p: DataParameters) -> dict[str, Any]:
    check_keys(p.overrides, "the deployment parameter 'overrides'")
    values = {
        "storage_dir": p.storage_dir,
        "source": p.source,
        "crawl": {"max_per_class": p.max_per_class},
        "augment": {
            "multiplier": p.augment_multiplier,
            "target_per_class": p.augment_target_per_class,
        },
    }
    return deep_merge(values, p.overrides)


def training_overrides(t: TrainingParameters) -> dict[str, Any]:
    return {"train": t.model_dump(exclude_none=True)}


def make_task_runner(r: RunnerParameters) -> Any:
    if r.task_runner == "dask":
        from prefect_dask import DaskTaskRunner

        if r.dask_address:
            return DaskTaskRunner(address=r.dask_address)
        return DaskTaskRunner(cluster_kwargs={"n_workers": r.dask_workers, "threads_per_worker": 1})
    from prefect.task_runners import ThreadPoolTaskRunner

    return ThreadPoolTaskRunner(max_workers=r.crawl_concurrency)


def latest_augmented_dir(settings: Settings) -> Path | None:
    """The committed augmentation to train with on the current split (logged: which, why)."""
    path, note = opt.find_augmentation(settings)
    log.info("%s", note)
    return path


def _run_training(
    config_path: str | None, overrides: dict[str, Any], run_id: str | None = None
) -> dict[str, Any]:
    # Imported here: TensorFlow loads with it, and a refresh that does not retrain never needs it.
    from flows.train import train as train_flow

    settings = load_settings(Path(config_path) if config_path else None, overrides)
    augmented = latest_augmented_dir(settings)
    result = train_flow(
        config_path=config_path,
        overrides=overrides,
        augmented_dir=str(augmented) if augmented else None,
        run_id=run_id,
    )
    _ui.run_links_task(Path(result["run_dir"]))
    return result


def _start_retrain(params: RefreshParameters, growth: float) -> dict[str, Any]:
    """Start the retrain deployment (its own run, on whichever worker is free), or retrain in
    this flow when no such deployment is registered (a local `landmarks refresh`)."""
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    logger = get_run_logger()
    retrain_params = RetrainParameters(
        config_path=params.config_path,
        storage_dir=params.storage_dir,
        training=params.training,
        overrides=params.overrides,
    )
    try:
        run = run_deployment(
            params.retrain_deployment,
            parameters={"params": retrain_params.model_dump(mode="json")},
            timeout=0,
            tags=["retrain-on-growth"],
        )
    except ObjectNotFound:
        logger.info("no deployment %r: retraining in this flow", params.retrain_deployment)
        overrides = deep_merge(data_overrides(params), training_overrides(params.training))
        result = _run_training(params.config_path, overrides)
        return {"mode": "inline", "run_id": result["run_id"], "top1": result["top1"]}
    logger.info(
        "dataset grew by %.1f%% (> %.1f%%): started %s as flow run %s",
        100 * growth,
        100 * (params.retrain_on_growth or 0),
        params.retrain_deployment,
        run.id,
    )
    return {"mode": "deployment", "flow_run_id": str(run.id)}


# --------------------------------------------------------------------------- entry points


@flow(name="landmarks-refresh", log_prints=True)
def refresh(params: RefreshParameters = DEFAULT_REFRESH) -> dict[str, Any]:
    """Scheduled dataset refresh: get images, clean, dedup, split, augment; retrain when the
    dataset grew by more than ``retrain_on_growth``."""
    runner = make_task_runner(params.runner)
    result = refresh_flow.with_options(task_runner=runner)(
        config_path=params.config_path,
        overrides=data_overrides(params),
        fan_out_augment=params.runner.task_runner == "dask",
    )
    share = params.retrain_on_growth
    if share is not None and result["growth"] > share:
        result["retrain"] = _start_retrain(params, result["growth"])
    else:
        get_run_logger().info(
            "dataset grew by %.1f%%: no retrain (threshold %s)",
            100 * result["growth"],
            "off" if share is None else f"{100 * share:.1f}%",
        )
    return result


@flow(name="landmarks-retrain", log_prints=True, persist_result=True)
def retrain(params: RetrainParameters = DEFAULT_RETRAIN) -> dict[str, Any]:
    """Train and evaluate a model on the current split and its augmentation, on demand."""
    check_keys(params.overrides, "the deployment parameter 'overrides'")
    overrides = deep_merge(
        deep_merge({"storage_dir": params.storage_dir}, training_overrides(params.training)),
        params.overrides,
    )
    return _run_training(params.config_path, overrides, params.run_id)


@flow(name="landmarks-pipeline", log_prints=True)
def pipeline(params: PipelineParameters = DEFAULT_PIPELINE) -> dict[str, Any]:
    """Everything in one run: refresh, then train and evaluate."""
    data = refresh_flow.with_options(task_runner=make_task_runner(params.runner))(
        config_path=params.config_path,
        overrides=data_overrides(params),
        fan_out_augment=params.runner.task_runner == "dask",
    )
    overrides = deep_merge(data_overrides(params), training_overrides(params.training))
    return {**data, **_run_training(params.config_path, overrides)}


# --------------------------------------------------------------------------- operating

# What `landmarks serve` runs: (flow, deployment name).
SERVED = [(refresh, "weekly"), (retrain, "on-demand"), (pipeline, "full")]


def ensure_concurrency_limits(limits: dict[str, int] | None = None) -> None:
    """Create (or reset) the tag concurrency limits on the current Prefect API."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        for tag, limit in (limits or CONCURRENCY_LIMITS).items():
            client.create_concurrency_limit(tag=tag, concurrency_limit=limit)
            log.info("concurrency limit %s = %d", tag, limit)


def ensure_work_pool(name: str = WORK_POOL) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(WorkPoolCreate(name=name, type="process"))
            log.info("created process work pool %s", name)
        except ObjectAlreadyExists:
            log.info("work pool %s exists", name)


def deploy_all(pool: str = WORK_POOL, names: list[str] | None = None) -> None:
    """Register the deployments of ``prefect.yaml`` (with its pool and limits in place)."""
    ensure_work_pool(pool)
    ensure_concurrency_limits()
    cmd = [sys.executable, "-m", "prefect", "--no-prompt", "deploy"]
    cmd += [a for n in names for a in ("--name", n)] if names else ["--all"]
    subprocess.run(cmd, cwd=PROJECT_ROOT, check=True, env=os.environ.copy())


def release_pool_deployments(names: list[str]) -> list[str]:
    """Delete the deployments of these names that `landmarks deploy` bound to a work pool.

    `serve` registers the same names for its own process; upserting over a pool deployment
    keeps the pool and drops the code location, and every run then crashed looking for its
    code in '<repository>/None'. A served process replaces them (and says so); `landmarks
    deploy` registers them for the pool again. Flow runs and their history stay.
    """
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    released = []
    with get_client(sync_client=True) as client:
        for name in names:
            try:
                existing = client.read_deployment_by_name(name)
            except ObjectNotFound:
                continue
            if existing.work_pool_name:
                client.delete_deployment(existing.id)
                released.append(name)
                log.warning(
                    "deployment %s was registered for work pool %s by `landmarks deploy`: "
                    "this process serves it now (`landmarks deploy` gives it back to the pool)",
                    name,
                    existing.work_pool_name,
                )
    return released


def serve_all(refresh_cron: str = REFRESH_CRON, timezone: str = "UTC", limit: int = 2) -> None:
    """Register the three deployments and run them in this process until interrupted."""
    import signal

    from prefect import serve
    from prefect.schedules import Cron

    # Ctrl-C (SIGINT to the process group) stops serving, even when this process was started
    # with SIGINT ignored (a background job of a shell script inherits that).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    ensure_concurrency_limits()
    release_pool_deployments([f"{f.name}/{d}" for f, d in SERVED])
    serve(
        refresh.to_deployment(
            name="weekly",
            schedule=Cron(refresh_cron, timezone=timezone),
            description="Dataset refresh on a schedule; retrains on growth.",
            tags=["refresh"],
        ),
        retrain.to_deployment(
            name="on-demand", description="Retrain and evaluate now.", tags=["retrain"]
        ),
        pipeline.to_deployment(name="full", description="Refresh then train.", tags=["pipeline"]),
        limit=limit,
    )


def describe_retrain(run: Any, waited: bool) -> str:
    """What `landmarks retrain` prints: the flow run, where to follow it and, once it has
    finished, the new training run's id and test metrics and whether it became champion."""
    from prefect.settings import PREFECT_UI_URL

    state = run.state.name if run.state else "Scheduled"
    ui = PREFECT_UI_URL.value()
    lines = [
        f"flow run {run.name} ({run.id}): {state}",
        f"follow it: {ui}/runs/flow-run/{run.id}"
        if ui
        else f"follow it: prefect flow-run logs {run.id}",
    ]
    if waited and run.state and run.state.is_completed():
        try:
            result = run.state.result()
        except Exception as exc:  # the result lives where the worker ran; say where to look
            lines.append(f"metrics: in the flow run's artifacts ({exc.__class__.__name__})")
        else:
            top3 = result.get("top3")
            crowned = (
                "promoted to champion"
                if result.get("promoted")
                else f"champion stays {result.get('champion')}"
            )
            lines.append(
                f"run {result['run_id']}: test top-1 {result['top1']:.4f}"
                + (f", top-3 {top3:.4f}" if top3 is not None else "")
                + f"; {crowned}"
            )
            lines.append(f"report: {result['report_path']}")
    return "\n".join(lines)
