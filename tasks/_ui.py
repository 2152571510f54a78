"""Progress and table artifacts shared by the tasks."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)


def progress_reporter(
    key: str, description: str, min_interval_s: float = 2.0
) -> Callable[[int, int], None]:
    """A core-style ``progress(done, total)`` callback that updates a Prefect progress artifact,
    at most every ``min_interval_s`` seconds (and always at the end)."""
    artifact_id = create_progress_artifact(0.0, key=key, description=description)
    last = [0.0]

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - last[0] < min_interval_s:
            return
        last[0] = now
        update_progress_artifact(artifact_id, 100.0 * done / total if total else 100.0)

    return report


def table(key: str, rows: list[dict[str, Any]], description: str) -> None:
    create_table_artifact(key=key, table=rows, description=description)


def markdown(key: str, text: str, description: str) -> None:
    create_markdown_artifact(key=key, markdown=text, description=description)


def per_class_rows(counts: dict[str, int], column: str = "images") -> list[dict[str, Any]]:
    return [{"class": name, column: n} for name, n in sorted(counts.items())]
