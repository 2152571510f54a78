"""Augmentation as one Prefect task per chunk, for a task runner that spreads work over machines.

The augment stage parallelises itself with a process pool on one machine. On a Dask cluster
the flow maps :func:`augment_chunk_task` over the chunk indices instead; every chunk is
committed atomically by the core, so the stage's own ``augment_task`` that runs afterwards finds
them all done, verifies them and writes the manifest (and redoes any chunk a lost worker left
unfinished).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task, unmapped
from prefect.logging import get_run_logger

from landmarks import augment
from landmarks.split import read_split
from landmarks.storage import Layout, read_json
from tasks import _policy


def _plan(
    storage_dir: Path, split_manifest: Path, dataset_version: str, options: augment.AugmentOptions
) -> tuple[Path, augment.Plan]:
    out_dir = Layout(storage_dir).augmented_dir / options.key(dataset_version)
    saved = out_dir / augment.PLAN_FILE
    if saved.exists():  # an earlier attempt's plan wins: chunk boundaries never move
        return out_dir, augment.Plan.from_json(read_json(saved)["plan"])
    train = read_split(split_manifest, "train")
    plan = augment.make_plan(
        train, options.multiplier, options.target_per_class, options.chunk_size, options.seed
    )
    return out_dir, plan


@task(name="augment-plan", retries=0)
def augment_plan_task(
    storage_dir: Path, split_manifest: Path, dataset_version: str, options: augment.AugmentOptions
) -> dict[str, Any]:
    options.validate()
    out_dir, plan = _plan(storage_dir, split_manifest, dataset_version, options)
    out_dir.mkdir(parents=True, exist_ok=True)
    get_run_logger().info(
        "augment plan: %d images in %d chunks -> %s", plan.total, plan.num_chunks, out_dir
    )
    return {"out_dir": str(out_dir), "plan": plan.to_json(), "num_chunks": plan.num_chunks}


@task(
    name="augment-chunk",
    retries=1,
    retry_condition_fn=_policy.retry_on_transient,
    tags=["augment"],
)
def augment_chunk_task(
    index: int, planned: dict[str, Any], clean_dir: Path, options: augment.AugmentOptions
) -> int:
    augment.limit_threads()
    return augment.write_chunk(
        index,
        augment.Plan.from_json(planned["plan"]),
        clean_dir,
        Path(planned["out_dir"]),
        options,
    )


def augment_chunks_fanout(
    storage_dir: Path, split_manifest: Path, dataset_version: str, options: augment.AugmentOptions
) -> int:
    """Map one task per chunk on the current task runner; returns the images written."""
    planned = augment_plan_task(storage_dir, split_manifest, dataset_version, options)
    written = augment_chunk_task.map(
        range(planned["num_chunks"]),
        unmapped(planned),
        unmapped(Layout(storage_dir).clean_dir),
        unmapped(options),
    ).result()
    return sum(written)
