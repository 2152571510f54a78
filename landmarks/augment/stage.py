"""The augment run: lock, plan, skip committed chunks, write the rest in worker processes."""

from __future__ import annotations

import fcntl
import hashlib
import logging
import multiprocessing
import os
import shutil
from concurrent.futures import (
    FIRST_COMPLETED,
    Future,
    ProcessPoolExecutor,
    wait,
)
from dataclasses import asdict
from pathlib import Path
from typing import Any

from landmarks.augment.chunks import (
    _worker_chunk,
    _worker_init,
    chunk_is_committed,
    chunk_name,
    limit_threads,
    write_chunk,
)
from landmarks.augment.options import (
    CHUNK_MANIFEST,
    LOCK_FILE,
    PLAN_FILE,
    AugmentOptions,
    AugmentResult,
    Progress,
)
from landmarks.augment.plan import Plan, make_plan
from landmarks.storage import atomic_write_json, read_json

log = logging.getLogger(__name__)


def _lock(out_dir: Path) -> int:
    fd = os.open(out_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RuntimeError(
            f"another augment run is writing {out_dir}; wait for it or stop it, then rerun "
            "(a killed run releases the lock and this run resumes it)"
        ) from None
    return fd


def _load_or_save_plan(
    out_dir: Path, train: list[dict[str, Any]], dataset_version: str, options: AugmentOptions
) -> Plan:
    """The plan saved by the first attempt wins, so chunk boundaries never move on resume."""
    plan_path = out_dir / PLAN_FILE
    if plan_path.exists():
        return Plan.from_json(read_json(plan_path)["plan"])
    plan = make_plan(
        train, options.multiplier, options.target_per_class, options.chunk_size, options.seed
    )
    atomic_write_json(
        plan_path,
        {"dataset_version": dataset_version, "options": asdict(options), "plan": plan.to_json()},
    )
    return plan


def augment_train(
    train: list[dict[str, Any]],
    clean_dir: Path,
    augmented_root: Path,
    dataset_version: str,
    options: AugmentOptions,
    progress: Progress | None = None,
) -> AugmentResult:
    """Augment the train records (``path`` relative to ``clean_dir``, ``class``) in chunks.

    Output goes to ``augmented_root/<options.key(dataset_version)>/``. Rerunning with the same
    arguments resumes: committed chunks are kept, the rest is written.
    """
    options.validate()
    out_dir = augmented_root / options.key(dataset_version)
    out_dir.mkdir(parents=True, exist_ok=True)
    lock_fd = _lock(out_dir)
    try:
        plan = _load_or_save_plan(out_dir, train, dataset_version, options)
        # Under the lock every temp folder is left over from a killed run.
        for stale in out_dir.glob(".chunk-*.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        todo = [
            i for i in range(plan.num_chunks) if not chunk_is_committed(out_dir / chunk_name(i))
        ]
        done_before = plan.num_chunks - len(todo)
        images_done = plan.total - sum(plan.chunk_len(i) for i in todo)
        if progress:
            progress(images_done, plan.total)
        if options.num_workers <= 1 or len(todo) <= 1:
            previous = limit_threads()
            try:
                for i in todo:
                    write_chunk(i, plan, clean_dir, out_dir, options)
                    images_done += plan.chunk_len(i)
                    if progress:
                        progress(images_done, plan.total)
            finally:
                import cv2

                cv2.setNumThreads(previous)
        else:
            images_done = _run_pool(todo, plan, clean_dir, out_dir, options, images_done, progress)
    finally:
        os.close(lock_fd)

    before: dict[str, int] = {}
    for record in train:
        before[record["class"]] = before.get(record["class"], 0) + 1
    after = {c.class_name: before.get(c.class_name, 0) + c.wanted for c in plan.classes}
    atomic_write_json(
        out_dir / "manifest.json",
        {
            "dataset_version": dataset_version,
            "options": asdict(options),
            "num_images": plan.total,
            "num_chunks": plan.num_chunks,
            "per_class_before": before,
            "per_class_after": after,
        },
    )
    log.info(
        "augment: %d images in %d chunks (%d already done) -> %s",
        plan.total,
        plan.num_chunks,
        done_before,
        out_dir,
    )
    return AugmentResult(
        output_dir=out_dir,
        num_images=plan.total,
        num_chunks=plan.num_chunks,
        chunks_done_before=done_before,
        per_class_before=before,
        per_class_after=after,
    )


def _run_pool(
    todo: list[int],
    plan: Plan,
    clean_dir: Path,
    out_dir: Path,
    options: AugmentOptions,
    images_done: int,
    progress: Progress | None,
) -> int:
    # spawn, not fork: the caller may be a Prefect worker with threads and an event loop,
    # which a forked child would inherit half-locked; a spawned worker starts clean.
    context = multiprocessing.get_context("spawn")
    pending = iter(todo)
    in_flight: set[Future[tuple[int, int]]] = set()
    with ProcessPoolExecutor(
        max_workers=options.num_workers,
        mp_context=context,
        initializer=_worker_init,
        initargs=(os.getpid(), plan.to_json(), clean_dir, out_dir, options),
    ) as pool:
        try:
            while True:
                # Two chunks per worker in flight: workers never wait, and the parent holds
                # a bounded number of futures however many chunks there are.
                while len(in_flight) < 2 * options.num_workers:
                    index = next(pending, None)
                    if index is None:
                        break
                    in_flight.add(pool.submit(_worker_chunk, index))
                if not in_flight:
                    break
                finished, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in finished:
                    index, _ = future.result()
                    images_done += plan.chunk_len(index)
                    if progress:
                        progress(images_done, plan.total)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return images_done


def list_augmented(out_dir: Path) -> list[tuple[Path, str]]:
    """(image path, class) of every committed augmented image under ``out_dir``.

    The order is a fixed pseudo-random interleaving (by a hash of the file name), not the
    chunk order: the plan groups copies by class and source, and a reader with a small
    shuffle buffer would otherwise see long runs of one class.
    """
    items: list[tuple[str, Path, str]] = []
    for chunk in sorted(Path(out_dir).glob("chunk-*")):
        manifest = chunk / CHUNK_MANIFEST
        if not manifest.exists():
            continue
        for f in read_json(manifest)["files"]:
            order = hashlib.blake2b(f["path"].encode(), digest_size=8).hexdigest()
            items.append((order, chunk / f["path"], f["class"]))
    items.sort(key=lambda item: (item[0], item[1].name))
    return [(path, class_name) for _, path, class_name in items]
