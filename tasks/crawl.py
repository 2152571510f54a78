from __future__ import annotations

from pathlib import Path
from typing import Any

import requests
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from prefect.tasks import exponential_backoff

from landmarks import crawl, ingest
from landmarks.catalog import Landmark
from landmarks.storage import Layout
from tasks import _policy, _ui


def _retry_crawl(task: Any, task_run: Any, state: Any) -> bool:
    """Retry what a later attempt can cure: an empty result (engines rate-limit and recover),
    network and storage errors. A bad URL-list file or a bug fails at once."""
    try:
        state.result()
    except (crawl.EmptyCrawl, requests.RequestException):
        return True
    except Exception as exc:
        return _policy.is_transient(exc)
    return False


def _slug(class_name: str) -> str:
    # Artifact keys take lower-case letters, digits and dashes only.
    return class_name.lower().replace("_", "-")


@task(
    name="check-network",
    retries=2,
    retry_delay_seconds=exponential_backoff(backoff_factor=5),
    retry_jitter_factor=0.5,
    tags=["network"],
)
def check_network_task(options: crawl.CrawlOptions) -> None:
    crawl.check_network(options.engines, options.connectivity_timeout_s, options.endpoint_map())


@task(
    name="crawl-class",
    retries=2,
    retry_delay_seconds=exponential_backoff(backoff_factor=10),
    retry_jitter_factor=0.5,
    retry_condition_fn=_retry_crawl,
    cache_policy=NO_CACHE,  # a crawl's result depends on the web, never on its inputs alone
    tags=["network", "crawl"],
)
def crawl_class_task(
    landmark: Landmark, storage_dir: Path, options: crawl.CrawlOptions, refresh_id: str
) -> crawl.ClassCrawl:
    """Crawl one class; fails (after its retries) if the class has no image at all."""
    slug = _slug(landmark.name)
    progress = _ui.progress_reporter(f"crawl-progress-{slug}", f"Crawling {landmark.name}")
    try:
        result = crawl.crawl_class(landmark, Layout(storage_dir), options, refresh_id, progress)
    except crawl.EmptyCrawl as exc:
        if exc.result is not None:
            _ui.table(
                f"crawl-{slug}",
                crawl.attempt_rows(exc.result),
                f"{landmark.name}: what each engine answered (no image found)",
            )
        raise
    _ui.table(
        f"crawl-{slug}",
        crawl.attempt_rows(result),
        f"{landmark.name}: new images per engine and query",
    )
    for engine, why in result.blocked.items():
        get_run_logger().warning("%s: %s was %s", landmark.name, engine, why)
    get_run_logger().info(
        "%s: %d new images %s (%d held before)",
        landmark.name,
        result.added,
        result.per_engine,
        result.had_before,
    )
    return result


@task(
    name="import-folder",
    retries=1,
    retry_delay_seconds=5,
    retry_condition_fn=_policy.retry_on_transient,
)
def import_folder_task(source_dir: Path, storage_dir: Path) -> ingest.IngestResult:
    progress = _ui.progress_reporter("import-progress", f"Importing {source_dir}")
    result = ingest.import_folder(source_dir, Layout(storage_dir), progress=progress)
    get_run_logger().info(
        "imported %d new files (%d already in raw/)", result.added, result.skipped_known
    )
    _ui.table(
        "raw-images-per-class",
        _ui.per_class_rows(result.per_class, "new images"),
        "New raw images per class in this refresh",
    )
    return result
