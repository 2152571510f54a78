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
    return {**data, **result}
