from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.logging import get_run_logger
from prefect.tasks import exponential_backoff

from landmarks import crawl, ingest
from landmarks.catalog import Landmark
from landmarks.storage import Layout
from tasks import _ui


@task(name="check-network", retries=0)
def check_network_task(options: crawl.CrawlOptions) -> None:
    crawl.check_network(options.engines, options.connectivity_timeout_s)


@task(
    name="crawl-class",
    retries=2,
    retry_delay_seconds=exponential_backoff(backoff_factor=10),
    retry_jitter_factor=0.5,
    tags=["network"],
)
def crawl_class_task(
    landmark: Landmark, storage_dir: Path, options: crawl.CrawlOptions, refresh_id: str
) -> crawl.ClassCrawl:
    result = crawl.crawl_class(landmark, Layout(storage_dir), options, refresh_id)
    get_run_logger().info("%s: %d new images %s", landmark.name, result.added, result.per_engine)
    return result


@task(name="import-folder", retries=1, retry_delay_seconds=5)
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
