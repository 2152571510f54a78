from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.logging import get_run_logger

from landmarks import clean, dedup
from landmarks.storage import Layout
from tasks import _policy, _ui


@task(
    name="dedup",
    retries=1,
    retry_condition_fn=_policy.retry_on_transient,
    cache_policy=_policy.DEDUP_CACHE,
)  # noqa: E501
def dedup_task(
    storage_dir: Path, clean_options: clean.CleanOptions, options: dedup.DedupOptions
) -> dedup.DedupResult:
    layout = Layout(storage_dir)
    records = clean.current_records(layout.clean_manifest, clean_options.digest())
    progress = _ui.progress_reporter("dedup-progress", "Perceptual hashing")
    steps = None
    if options.local_features:
        reporters = {
            "search": _ui.progress_reporter(
                "dedup-search-progress", "Searching the local-feature index"
            ),
            "verify": _ui.progress_reporter(
                "dedup-verify-progress", "Verifying the pairs local features propose"
            ),
        }

        def steps(step: str, done: int, total: int) -> None:
            reporters[step](done, total)

    result = dedup.dedup_clean(layout, records, options, progress, steps)
    get_run_logger().info(
        "dedup: %d images -> %d kept, %d duplicates in %d groups, %d label conflicts%s",
        result.num_images,
        result.num_kept,
        result.num_duplicates,
        result.num_groups,
        result.num_conflicts,
        " (unchanged input, reused)" if result.reused else "",
    )
    _ui.table(
        "dedup-summary",
        [
            {
                "images": result.num_images,
                "kept": result.num_kept,
                "duplicates": result.num_duplicates,
                "groups": result.num_groups,
                "label_conflicts": result.num_conflicts,
            }
        ],
        "Duplicate removal",
    )
    if result.html_path is not None:
        _ui.link(
            "dedup-report",
            result.html_path,
            "Duplicate groups and quarantined files, as thumbnails with reasons and distances",
        )
    return result
