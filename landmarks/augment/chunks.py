"""Chunks: a range of the plan written into a temp folder and committed by one rename."""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
from collections import deque
from concurrent.futures import (
    Future,
    ThreadPoolExecutor,
)
from pathlib import Path
from typing import Any

import numpy as np

from landmarks.augment.options import CHUNK_MANIFEST, AugmentOptions
from landmarks.augment.plan import Plan
from landmarks.augment.transforms import (
    build_transform,
    decode_size,
    encode_jpeg,
    image_seed,
    load_source,
)
from landmarks.manifest import fault_point
from landmarks.storage import atomic_write_json, read_json, sha256_bytes


def chunk_name(index: int) -> str:
    return f"chunk-{index:05d}"


def output_name(class_name: str, source: str, copy: int) -> str:
    return f"{class_name}__{Path(source).stem}__{copy:04d}.jpg"


def chunk_is_committed(chunk_dir: Path) -> bool:
    """A committed chunk has its manifest and every file it lists, at the recorded size."""
    manifest = chunk_dir / CHUNK_MANIFEST
    if not manifest.is_file():
        return False
    try:
        files = read_json(manifest)["files"]
        return all((chunk_dir / f["path"]).stat().st_size == f["bytes"] for f in files)
    except (OSError, ValueError, KeyError, TypeError):
        return False


_TRANSFORMS: dict[tuple[str, int], Any] = {}
_MAX_PENDING_WRITES = 32


def write_chunk(
    index: int, plan: Plan, clean_dir: Path, out_dir: Path, options: AugmentOptions
) -> int:
    """Write chunk ``index`` into a temp folder, then commit it with one rename.

    Returns the number of images written (0 when the chunk was already committed).
    """
    final = out_dir / chunk_name(index)
    if chunk_is_committed(final):
        return 0
    key = (options.preset, options.output_size)
    if key not in _TRANSFORMS:
        _TRANSFORMS[key] = build_transform(options.preset, options.output_size)
    transform = _TRANSFORMS[key]
    min_side = decode_size(options.preset, options.output_size)
    tmp = out_dir / f".{chunk_name(index)}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    files = []
    current: tuple[str, np.ndarray] | None = None
    # File creation waits on the filesystem journal (0.06 ms per file on an idle disk, 0.45 ms
    # under load, measured): one writer thread overlaps that wait with the next image's
    # pixels. At most _MAX_PENDING_WRITES encoded images wait in memory.
    pending: deque[Future[int]] = deque()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="augment-write") as writer:
        for source, class_name, copy in plan.chunk_entries(index):
            if current is None or current[0] != source:
                current = (source, load_source(clean_dir / source, min_side))
            transform.set_random_seed(image_seed(options.seed, source, copy))
            data = encode_jpeg(transform(image=current[1])["image"], options.jpeg_quality)
            name = output_name(class_name, source, copy)
            if len(pending) >= _MAX_PENDING_WRITES:
                pending.popleft().result()
            pending.append(writer.submit((tmp / name).write_bytes, data))
            files.append(
                {
                    "path": name,
                    "class": class_name,
                    "source": source,
                    "copy": copy,
                    "bytes": len(data),
                    "sha256": sha256_bytes(data),
                }
            )
        for future in pending:  # surface a failed write before committing
            future.result()
    atomic_write_json(tmp / CHUNK_MANIFEST, {"index": index, "files": files})
    if final.exists():  # a damaged chunk that failed verification: replace it whole
        shutil.rmtree(final)
    os.replace(tmp, final)
    fault_point("augment", "committed")
    return len(files)


# Per-process state of a pool worker, set once by the initializer so that a task is just an
# index (nothing per image crosses the process boundary).
_WORKER: dict[str, Any] = {}


def _die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGKILL this worker when its parent dies, so a killed run leaves no
    orphan still writing a chunk while the resumed run cleans up."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: an orphan may linger until killed
        return
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def limit_threads() -> int:
    """One OpenCV thread per process: the parallelism is across processes, and OpenCV's own
    pool on top would oversubscribe the cores. Returns the previous setting."""
    import cv2

    previous = cv2.getNumThreads()
    cv2.setNumThreads(1)
    return previous


def _worker_init(
    parent_pid: int, plan_json: dict[str, Any], clean_dir: Path, out_dir: Path, options: Any
) -> None:
    _die_with_parent(parent_pid)
    limit_threads()
    _WORKER.update(
        plan=Plan.from_json(plan_json), clean_dir=clean_dir, out_dir=out_dir, options=options
    )


def _worker_chunk(index: int) -> tuple[int, int]:
    w = _WORKER
    return index, write_chunk(index, w["plan"], w["clean_dir"], w["out_dir"], w["options"])
