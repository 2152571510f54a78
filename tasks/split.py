from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.logging import get_run_logger

from landmarks import split
from landmarks.storage import Layout
from tasks import _policy, _ui


@task(name="split", retries=0, cache_policy=_policy.SPLIT_CACHE)
def split_task(
    storage_dir: Path, kept_path: Path, options: split.SplitOptions
) -> split.SplitResult:
    result = split.split_dataset(Layout(storage_dir), kept_path, options)
    get_run_logger().info(
        "split: dataset version %s, %d new", result.dataset_version, result.num_new
    )
    rows = [{"class": c, **counts} for c, counts in sorted(result.counts.items())]
    _ui.table(
        "split-per-class", rows, f"Images per class and split (dataset {result.dataset_version})"
    )
    return result
