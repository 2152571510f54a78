from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.logging import get_run_logger

from landmarks import augment
from landmarks.split import read_split
from landmarks.storage import Layout
from tasks import _policy, _ui


@task(
    name="augment",
    retries=1,
    retry_delay_seconds=5,
    retry_condition_fn=_policy.retry_on_transient,
    cache_policy=_policy.AUGMENT_CACHE,
)  # noqa: E501
def augment_task(
    storage_dir: Path, split_manifest: Path, dataset_version: str, options: augment.AugmentOptions
) -> augment.AugmentResult:
    """Augment the train split in atomic chunks; a retry resumes (committed chunks are kept)."""
    layout = Layout(storage_dir)
    progress = _ui.progress_reporter("augment-progress", "Augmenting the train split")
    result = augment.augment_train(
        read_split(split_manifest, "train"),
        layout.clean_dir,
        layout.augmented_dir,
        dataset_version,
        options,
        progress=progress,
    )
    get_run_logger().info(
        "augment: %d images in %d chunks (%d chunks already done) -> %s",
        result.num_images,
        result.num_chunks,
        result.chunks_done_before,
        result.output_dir,
    )
    rows = [
        {
            "class": c,
            "before": result.per_class_before.get(c, 0),
            "added": n - result.per_class_before.get(c, 0),
            "after": n,
        }
        for c, n in sorted(result.per_class_after.items())
    ]
    _ui.table("augment-per-class", rows, "Train images per class before and after augmentation")
    return result
