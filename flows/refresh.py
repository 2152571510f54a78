"""The ``refresh`` flow: get images -> clean -> dedup -> split -> augment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, unmapped
from prefect.logging import get_run_logger

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
from tasks.split import split_task


class CrawlFailed(RuntimeError):
    """Some classes ended a crawl with no images at all."""


@flow(name="refresh", log_prints=True)
def refresh(
    config_path: str | None = None, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Bring the dataset up to date: new images in, cleaned, deduplicated, split, augmented.

    Args:
        config_path: a TOML config file (optional).
        overrides: nested settings that win over the file and the environment,
            e.g. {"source": "/data/photos", "augment": {"multiplier": 1}}.
    """
    settings = load_settings(Path(config_path) if config_path else None, overrides)
    storage = settings.storage_dir.resolve()
    logger = get_run_logger()
    with exclusive_lock(storage, "refresh"):
        if settings.source == "web":
            crawl_opts = opt.crawl_options(settings)
            catalog = load_catalog(settings.catalog_path)
            check_network_task(crawl_opts)
            refresh_id = new_refresh_id()
            results = crawl_class_task.map(
                catalog, unmapped(storage), unmapped(crawl_opts), unmapped(refresh_id)
            ).result()
            _ui.table(
                "crawl-per-class",
                [
                    {
                        "class": r.class_name,
                        "new": r.added,
                        "rejected": r.rejected,
                        **{f"from_{e}": n for e, n in r.per_engine.items()},
                    }
                    for r in results
                ],
                "New images per class and engine in this crawl",
            )
            empty = [r.class_name for r in results if r.added == 0]
            if empty:
                logger.warning("no new images for: %s", ", ".join(empty))
        else:
            import_folder_task(Path(settings.source), storage)
        clean_opts = opt.clean_options(settings)
        clean_task(storage, clean_opts)
        deduped = dedup_task(storage, clean_opts, opt.dedup_options(settings))
        split = split_task(storage, deduped.kept_path, opt.split_options(settings))
        augmented = augment_task(
            storage, split.manifest_path, split.dataset_version, opt.augment_options(settings)
        )
    return {
        "storage_dir": str(storage),
        "split_manifest": str(split.manifest_path),
        "dataset_version": split.dataset_version,
        "augmented_dir": str(augmented.output_dir),
        "num_kept": deduped.num_kept,
        "num_augmented": augmented.num_images,
    }
