"""The ``refresh`` flow: get images -> clean -> dedup -> split -> augment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, unmapped
from prefect.logging import get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner

from flows import options as opt
from landmarks.catalog import load_catalog
from landmarks.config import load_settings
from landmarks.ingest import new_refresh_id
from landmarks.storage import exclusive_lock
from tasks import _ui
from tasks.augment import augment_task
from tasks.clean import clean_task
from tasks.crawl import check_network_task, crawl_class_task, import_folder_task
from tasks.dedup import dedup_task
from tasks.fanout import augment_chunks_fanout
from tasks.split import split_task
from tasks.suspects import apply_review_task

# Per-class crawl tasks run at most this many at once (the deployments make it a parameter
# through ``refresh.with_options(task_runner=...)``).
DEFAULT_CRAWL_CONCURRENCY = 4


class CrawlFailed(RuntimeError):
    """Some classes ended a crawl with no images at all."""


@flow(
    name="refresh",
    log_prints=True,
    task_runner=ThreadPoolTaskRunner(max_workers=DEFAULT_CRAWL_CONCURRENCY),
)
def refresh(
    config_path: str | None = None,
    overrides: dict[str, Any] | None = None,
    fan_out_augment: bool = False,
) -> dict[str, Any]:
    """Bring the dataset up to date: new images in, cleaned, deduplicated, split, augmented.

    Args:
        config_path: a TOML config file (optional).
        overrides: nested settings that win over the file and the environment,
            e.g. {"source": "/data/photos", "augment": {"multiplier": 1}}.
        fan_out_augment: one task per augmentation chunk on the flow's task runner (a Dask
            cluster spreads them over its workers) instead of the stage's own process pool.
    """
    settings = load_settings(Path(config_path) if config_path else None, overrides)
    storage = settings.storage_dir.resolve()
    logger = get_run_logger()
    with exclusive_lock(storage, "refresh"):
        if settings.source == "web":
            crawl_opts = opt.crawl_options(settings)
            catalog = load_catalog(settings.catalog_path)
            check_network_task(crawl_opts)
            from landmarks import crawl as crawl_core

            refresh_id = new_refresh_id()
            futures = crawl_class_task.map(
                catalog, unmapped(storage), unmapped(crawl_opts), unmapped(refresh_id)
            )
            # Wait for every class: one class failing must not stop the others' crawls.
            results, failed = [], []
            for landmark, future in zip(catalog, futures, strict=True):
                outcome = future.result(raise_on_failure=False)
                if isinstance(outcome, BaseException):
                    failed.append(landmark.name)
                    logger.error("crawl of %s failed: %s", landmark.name, outcome)
                    if isinstance(outcome, crawl_core.EmptyCrawl) and outcome.result:
                        results.append(outcome.result)
                else:
                    results.append(outcome)
            _ui.table(
                "crawl-per-class",
                crawl_core.engine_table(results, failed),
                "New images per class and engine in this crawl",
            )
            engines = crawl_core.engine_status_rows(results)
            _ui.table("crawl-engines", engines, "What each engine answered in this crawl")
            for row in engines:
                if row["status"] in ("blocked", "throttled"):
                    logger.warning("%s was %s: %s", row["engine"], row["status"], row["detail"])
            empty = [r.class_name for r in results if r.added == 0 and r.class_name not in failed]
            if empty:
                logger.warning("no new images for: %s", ", ".join(empty))
            if failed:
                raise CrawlFailed(
                    f"the crawl failed for {', '.join(failed)} (no image at all): the "
                    "crawl-<class> artifacts say what each engine answered. The other classes' "
                    "new images are in raw/ and stay there; run the refresh again after fixing "
                    "the engines or queries, or import those classes with --source DIR."
                )
        else:
            import_folder_task(Path(settings.source), storage)
        clean_opts = opt.clean_options(settings)
        clean_task(storage, clean_opts)
        deduped = dedup_task(storage, clean_opts, opt.dedup_options(settings))
        # Review decisions (remove / relabel) are applied to the keepers before the split.
        reviewed = apply_review_task(storage, deduped.kept_path, settings.suspects.match_distance)
        split = split_task(storage, reviewed.kept_path, opt.split_options(settings))
        augment_opts = opt.augment_options(settings)
        if fan_out_augment:
            augment_chunks_fanout(storage, split.manifest_path, split.dataset_version, augment_opts)
        # Writes the manifest and artifacts; after a fan-out every chunk is already committed.
        augmented = augment_task(storage, split.manifest_path, split.dataset_version, augment_opts)
        _ui.stage_counts_task(storage, augmented.output_dir)
    num_images = sum(sum(c.values()) for c in split.counts.values())
    before = num_images - split.num_new
    growth = split.num_new / before if before else (1.0 if num_images else 0.0)
    logger.info(
        "dataset %s: %d images, %d new (growth %.1f%%)",
        split.dataset_version,
        num_images,
        split.num_new,
        100 * growth,
    )
    return {
        "storage_dir": str(storage),
        "split_manifest": str(split.manifest_path),
        "dataset_version": split.dataset_version,
        "augmented_dir": str(augmented.output_dir),
        "num_kept": deduped.num_kept,
        "num_new": split.num_new,
        "num_before": before,
        "growth": growth,
        "num_augmented": augmented.num_images,
    }
