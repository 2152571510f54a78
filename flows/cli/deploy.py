"""Prefect deployments: serve, deploy, retrain on demand."""

from __future__ import annotations

import re
from typing import Annotated

import typer

import flows  # noqa: F401  (environment defaults before prefect)
from flows.cli.common import (
    BatchOpt,
    ConfigOpt,
    EpochsOpt,
    ImageSizeOpt,
    StorageOpt,
    _settings,
    app,
)
from landmarks.config import load_settings
from landmarks.errors import NotFound, UserError


@app.command()
def serve(
    refresh_cron: Annotated[
        str, typer.Option(help="Cron of the scheduled refresh (default Mondays 03:00).")
    ] = "0 3 * * 1",
    timezone: Annotated[str, typer.Option(help="Time zone of the cron.")] = "UTC",
    limit: Annotated[int, typer.Option(help="Flow runs at once in this process.")] = 2,
) -> None:
    """Register the deployments and run them in this process (no work pool or worker).

    The deployments: landmarks-refresh/weekly, landmarks-retrain/on-demand and
    landmarks-pipeline/full. Set PREFECT_API_URL to a running `prefect server` first. Ctrl-C
    stops it.
    """
    load_settings()  # a bad LANDMARKS_* variable or $LANDMARKS_CONFIG fails here, not in a run
    from flows.deploy import serve_all

    serve_all(refresh_cron=refresh_cron, timezone=timezone, limit=limit)


@app.command()
def deploy(
    pool: Annotated[str, typer.Option(help="Process work pool to create and deploy to.")] = (
        "landmarks"
    ),
    name: Annotated[
        list[str] | None, typer.Option(help="Only these deployments of prefect.yaml.")
    ] = None,
) -> None:
    """Register the deployments on a Prefect server, with their work pool and limits.

    The deployments of prefect.yaml go to the server at PREFECT_API_URL, after the process work
    pool and the concurrency limits (one training at a time) are created. Then run `prefect
    worker start --pool landmarks`.
    """
    load_settings()  # a bad LANDMARKS_* variable or $LANDMARKS_CONFIG fails here, not in a run
    from flows.deploy import deploy_all

    deploy_all(pool=pool, names=name)


@app.command()
def retrain(
    config: ConfigOpt = None,
    storage: StorageOpt = None,
    epochs: EpochsOpt = None,
    image_size: ImageSizeOpt = None,
    batch_size: BatchOpt = None,
    wait: Annotated[bool, typer.Option(help="Wait for the run and print its metrics.")] = False,
    deployment: Annotated[
        str, typer.Option(help="Retrain deployment to start.")
    ] = "landmarks-retrain/on-demand",
) -> None:
    """Ask the Prefect server to retrain now.

    Starts a run of the retrain deployment, which a worker (or `landmarks serve`) picks up.
    Prints the flow run id and where to follow it.
    """
    _settings(config, storage, None, None, epochs, image_size, batch_size)
    from prefect.deployments import run_deployment

    from flows.deploy import RetrainParameters, TrainingParameters, describe_retrain

    params = RetrainParameters(
        config_path=str(config.resolve()) if config else None,
        storage_dir=str(storage.resolve()) if storage else None,
        training=TrainingParameters(epochs=epochs, image_size=image_size, batch_size=batch_size),
    )
    from prefect.exceptions import ObjectNotFound

    try:
        run = run_deployment(
            deployment,
            parameters={"params": params.model_dump(mode="json")},
            timeout=None if wait else 0,
            as_subflow=False,
        )
    except ObjectNotFound:
        raise NotFound(
            f"no deployment {deployment} on the Prefect server: start `landmarks serve`, or "
            "register it with `landmarks deploy` (and set PREFECT_API_URL to that server)"
        ) from None
    typer.echo(describe_retrain(run, wait))
    if wait and run.state and not run.state.is_completed():
        reason = re.sub(r"^Flow run encountered an exception: ", "", run.state.message or "")
        raise UserError(f"retrain ended {run.state.name}: {reason}")
