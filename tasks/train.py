from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.logging import get_run_logger

from landmarks.train import loop
from landmarks.train.models import ModelSpec
from tasks import _policy, _ui


@task(
    name="train",
    retries=1,
    retry_delay_seconds=10,
    retry_condition_fn=_policy.retry_on_transient,
    tags=["training"],
)  # noqa: E501
def train_task(
    split_manifest: Path,
    clean_dir: Path,
    augmented_dir: Path | None,
    run_dir: Path,
    spec: ModelSpec,
    options: loop.TrainOptions,
) -> loop.TrainResult:
    # A retry finds the per-epoch backup in run_dir and resumes instead of starting over.
    logger = get_run_logger()
    progress = _ui.progress_reporter("train-progress", f"Training run {run_dir.name}", 0.0)

    def on_epoch(epoch: int, epochs: int, logs: dict[str, float]) -> None:
        progress(epoch, epochs)
        logger.info(
            "epoch %d/%d %s",
            epoch,
            epochs,
            " ".join(f"{k}={v:.4f}" for k, v in sorted(logs.items())),
        )

    result = loop.train_run(
        split_manifest, clean_dir, augmented_dir, run_dir, spec, options, on_epoch=on_epoch
    )
    progress(1, 1)
    logger.info(
        "trained %d epochs (resumed after %d) -> %s",
        result.epochs_run,
        result.resumed_from_epoch,
        result.model_path,
    )
    return result
