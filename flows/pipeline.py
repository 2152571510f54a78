"""The ``pipeline`` flow: ``refresh`` then ``train``."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.refresh import refresh
from flows.train import train


@flow(name="pipeline", log_prints=True)
def pipeline(
    config_path: str | None = None, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Everything: get images, clean, dedup, split, augment, train, evaluate."""
    data = refresh(config_path=config_path, overrides=overrides)
    result = train(
        config_path=config_path, overrides=overrides, augmented_dir=data["augmented_dir"]
    )
    suspects = _suspects_step(config_path, overrides)
    return {**data, **result, **suspects}


def _suspects_step(config_path: str | None, overrides: dict[str, Any] | None) -> dict[str, Any]:
    """Score the dataset out of fold and publish the top suspects and the review link."""
    from pathlib import Path

    from flows.options import suspects_options
    from landmarks.config import load_settings
    from tasks.suspects import suspects_task

    settings = load_settings(Path(config_path) if config_path else None, overrides)
    cfg = settings.suspects
    if not cfg.enabled:
        return {}
    found = suspects_task(
        settings.storage_dir.resolve(),
        suspects_options(settings),
        cfg.top,
        f"http://{cfg.review_host}:{cfg.review_port}/",
        cfg.auto_remove_confidence,
    )
    return {"suspects_path": str(found.path), "num_swaps": found.num_swaps}
