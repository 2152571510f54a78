"""Augment stage: albumentations on the train split only, written to disk in atomic chunks.

Memory is bounded by one chunk per worker, whatever the total. The plan (which source
image, which copy) is fixed up front and saved; every chunk is written into a temp folder
and committed by one atomic rename together with its ``chunk.json``. A rerun skips
committed chunks and removes half-written ones, so a killed run resumes without redoing or
duplicating work. Each output image has its own seed (base seed, source, copy), so the result
is byte-identical whatever the chunking or the number of workers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from landmarks.storage import atomic_write_json, read_json, sha256_bytes

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
PRESETS = ("original", "landmark", "none")
CHUNK_MANIFEST = "chunk.json"


@dataclass(frozen=True)
class AugmentOptions:
    preset: str = "original"
    multiplier: float = 2.0
    target_per_class: int | None = None
    chunk_size: int = 500
    output_size: int = 256
    num_workers: int = 1
    jpeg_quality: int = 92
    seed: int = 42

    def key(self, dataset_version: str) -> str:
        fields = {k: v for k, v in asdict(self).items() if k != "num_workers"}
        blob = json.dumps({"dataset": dataset_version, **fields}, sort_keys=True).encode()
        return sha256_bytes(blob)[:12]


@dataclass(frozen=True)
class AugmentResult:
    output_dir: Path
    num_images: int
    num_chunks: int
    chunks_done_before: int
    per_class_before: dict[str, int]
    per_class_after: dict[str, int]


def build_transform(preset: str, output_size: int):
    """The albumentations pipeline of a named preset, producing output_size x output_size."""
    import albumentations as A
    import cv2

    size = (output_size, output_size)
    if preset == "original":
        # The original project's Keras ImageDataGenerator settings: rotation 15 degrees,
        # shear 0.1 (taken as radians, about 5.7 degrees), zoom 0.2, shifts 0.1, h-flip,
        # nearest fill.
        steps = [
            A.Resize(*size),
            A.Affine(
                rotate=(-15, 15),
                shear=(-5.7, 5.7),
                scale=(0.8, 1.2),
                translate_percent=(-0.1, 0.1),
                border_mode=cv2.BORDER_REPLICATE,
                p=1.0,
            ),
            A.HorizontalFlip(p=0.5),
        ]
    elif preset == "landmark":
        steps = [
            A.RandomResizedCrop(size=size, scale=(0.45, 1.0), ratio=(0.75, 1.333), p=1.0),
            A.HorizontalFlip(p=0.5),
            A.Perspective(scale=(0.02, 0.06), p=0.3),
            A.Affine(rotate=(-10, 10), border_mode=cv2.BORDER_REFLECT_101, p=0.4),
            A.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.03, p=0.8),
            A.OneOf([A.GaussianBlur(blur_limit=(3, 5)), A.MotionBlur(blur_limit=5)], p=0.2),
            A.ImageCompression(quality_range=(50, 95), p=0.3),
            A.ToGray(p=0.05),
        ]
    elif preset == "none":
        steps = [A.Resize(*size)]
    else:
        raise ValueError(f"unknown augmentation preset {preset!r}; choose one of {PRESETS}")
    return A.Compose(steps)


def plan_copies(
    train: list[dict[str, Any]], multiplier: float, target_per_class: int | None
) -> list[dict[str, Any]]:
    """Which source image each augmented copy comes from, class by class, deterministic."""
    by_class: dict[str, list[dict[str, Any]]] = {}
    for r in sorted(train, key=lambda r: r["path"]):
        by_class.setdefault(r["class"], []).append(r)
    plan: list[dict[str, Any]] = []
    for class_name in sorted(by_class):
        members = by_class[class_name]
        n = len(members)
        wanted = max(0, target_per_class - n) if target_per_class else round(multiplier * n)
        for k in range(wanted):
            src = members[k % n]
            plan.append({"source": src["path"], "class": class_name, "copy": k // n})
    return plan


def _image_seed(seed: int, source: str, copy: int) -> int:
    digest = hashlib.sha256(f"{seed}|{source}|{copy}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def _chunk_name(index: int) -> str:
    return f"chunk-{index:05d}"


_TRANSFORM_CACHE: dict[tuple[str, int], Any] = {}


def _worker_init() -> None:
    import cv2

    cv2.setNumThreads(1)


def augment_chunk(
    index: int,
    entries: list[dict[str, Any]],
    clean_dir: Path,
    out_dir: Path,
    options: AugmentOptions,
) -> int:
    """Write one chunk into a temp folder and commit it with a rename. Returns images written."""
    final = out_dir / _chunk_name(index)
    if (final / CHUNK_MANIFEST).exists():
        return 0
    key = (options.preset, options.output_size)
    if key not in _TRANSFORM_CACHE:
        _TRANSFORM_CACHE[key] = build_transform(options.preset, options.output_size)
    transform = _TRANSFORM_CACHE[key]
    tmp = out_dir / f".{_chunk_name(index)}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    files = []
    for entry in entries:
        with Image.open(clean_dir / entry["source"]) as im:
            im.draft("RGB", (options.output_size, options.output_size))
            pixels = np.asarray(im.convert("RGB"))
        transform.set_random_seed(_image_seed(options.seed, entry["source"], entry["copy"]))
        out = transform(image=pixels)["image"]
        stem = Path(entry["source"]).stem
        name = f"{entry['class']}__{stem}__{entry['copy']:03d}.jpg"
        Image.fromarray(out).save(tmp / name, format="JPEG", quality=options.jpeg_quality)
        files.append({"path": name, "class": entry["class"], "source": entry["source"]})
    atomic_write_json(tmp / CHUNK_MANIFEST, {"index": index, "files": files})
    if final.exists():  # a stale folder without a manifest: an interrupted commit
        shutil.rmtree(final)
    os.replace(tmp, final)
    return len(files)


def augment_train(
    train: list[dict[str, Any]],
    clean_dir: Path,
    augmented_root: Path,
    dataset_version: str,
    options: AugmentOptions,
    progress: Progress | None = None,
) -> AugmentResult:
    """Augment the train records (``path`` relative to ``clean_dir``, ``class``) in chunks."""
    out_dir = augmented_root / options.key(dataset_version)
    out_dir.mkdir(parents=True, exist_ok=True)
    plan_path = out_dir / "plan.json"
    if plan_path.exists():
        plan = read_json(plan_path)["plan"]
    else:
        plan = plan_copies(train, options.multiplier, options.target_per_class)
        atomic_write_json(
            plan_path,
            {"dataset_version": dataset_version, "options": asdict(options), "plan": plan},
        )
    for stale in out_dir.glob(".chunk-*.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    chunks = [plan[i : i + options.chunk_size] for i in range(0, len(plan), options.chunk_size)]
    todo = [
        i for i in range(len(chunks)) if not (out_dir / _chunk_name(i) / CHUNK_MANIFEST).exists()
    ]
    done_before = len(chunks) - len(todo)
    images_done = sum(len(chunks[i]) for i in range(len(chunks)) if i not in set(todo))
    if progress:
        progress(images_done, len(plan))
    if options.num_workers <= 1 or len(todo) <= 1:
        _worker_init()
        for i in todo:
            images_done += augment_chunk(i, chunks[i], clean_dir, out_dir, options)
            if progress:
                progress(images_done, len(plan))
    else:
        with ProcessPoolExecutor(max_workers=options.num_workers, initializer=_worker_init) as pool:
            futures = [
                pool.submit(augment_chunk, i, chunks[i], clean_dir, out_dir, options) for i in todo
            ]
            for future in as_completed(futures):
                images_done += future.result()
                if progress:
                    progress(images_done, len(plan))
    before: dict[str, int] = {}
    for r in train:
        before[r["class"]] = before.get(r["class"], 0) + 1
    after = dict(before)
    for entry in plan:
        after[entry["class"]] = after.get(entry["class"], 0) + 1
    atomic_write_json(
        out_dir / "manifest.json",
        {
            "dataset_version": dataset_version,
            "num_images": len(plan),
            "num_chunks": len(chunks),
            "per_class_before": before,
            "per_class_after": after,
        },
    )
    log.info(
        "augment: %d images in %d chunks (%d already done)", len(plan), len(chunks), done_before
    )
    return AugmentResult(
        output_dir=out_dir,
        num_images=len(plan),
        num_chunks=len(chunks),
        chunks_done_before=done_before,
        per_class_before=before,
        per_class_after=after,
    )


def list_augmented(out_dir: Path) -> list[tuple[Path, str]]:
    """(image path, class) of every committed augmented image under ``out_dir``."""
    items: list[tuple[Path, str]] = []
    for chunk in sorted(Path(out_dir).glob("chunk-*")):
        manifest = chunk / CHUNK_MANIFEST
        if not manifest.exists():
            continue
        for f in read_json(manifest)["files"]:
            items.append((chunk / f["path"], f["class"]))
    return items
