"""Split stage: stratified train/val/test, made before any augmentation.

Deterministic by content and stable under growth: an image keeps the split it was first
given (keyed by its pixel hash), and new images go, in a seeded hash order, to whichever
split of their class is furthest below its target share. Only dedup keepers are split, so a
duplicate group can never straddle two splits.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from landmarks.storage import Layout, digest_records, read_jsonl, write_jsonl

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SplitOptions:
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 42

    def fractions(self) -> dict[str, float]:
        train = 1.0 - self.val_fraction - self.test_fraction
        if train <= 0:
            raise ValueError("val_fraction + test_fraction must leave room for training")
        return {"train": train, "val": self.val_fraction, "test": self.test_fraction}


@dataclass(frozen=True)
class SplitResult:
    manifest_path: Path
    dataset_version: str
    counts: dict[str, dict[str, int]]  # class -> split -> count
    num_new: int


def _order_key(seed: int, pixel_hash: str) -> str:
    return hashlib.sha256(f"{seed}:{pixel_hash}".encode()).hexdigest()


def assign_splits(
    items: list[dict[str, Any]],
    previous: dict[str, str],
    options: SplitOptions,
) -> list[dict[str, Any]]:
    """Return ``items`` with a ``split`` field; ``previous`` maps pixel_hash -> split."""
    fractions = options.fractions()
    by_class: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        by_class.setdefault(item["class"], []).append(item)
    out: list[dict[str, Any]] = []
    for class_name in sorted(by_class):
        members = by_class[class_name]
        counts = dict.fromkeys(SPLITS, 0)
        fresh = []
        for item in members:
            split = previous.get(item["pixel_hash"])
            if split in counts:
                counts[split] += 1
                out.append({**item, "split": split})
            else:
                fresh.append(item)
        fresh.sort(key=lambda it: _order_key(options.seed, it["pixel_hash"]))
        for item in fresh:
            total = sum(counts.values()) + 1
            deficits = {s: fractions[s] * total - counts[s] for s in SPLITS}
            # Ties go to the rarer split first, so a tiny class still gets a test image.
            split = max(reversed(SPLITS), key=lambda s: deficits[s])
            counts[split] += 1
            out.append({**item, "split": split})
    return out


def split_dataset(layout: Layout, kept_path: Path, options: SplitOptions) -> SplitResult:
    """Assign every dedup keeper to a split and write ``splits/split.jsonl``."""
    kept = read_jsonl(kept_path)
    previous = {r["pixel_hash"]: r["split"] for r in read_jsonl(layout.split_manifest)}
    items = [
        {
            "path": r["path"],
            "class": r["class"],
            "pixel_hash": r["pixel_hash"],
            "phash": r.get("phash", ""),
        }
        for r in kept
    ]
    assigned = assign_splits(items, previous, options)
    assigned.sort(key=lambda r: (r["split"], r["class"], r["path"]))
    write_jsonl(layout.split_manifest, assigned)
    counts: dict[str, dict[str, int]] = {}
    for r in assigned:
        counts.setdefault(r["class"], dict.fromkeys(SPLITS, 0))[r["split"]] += 1
    version = dataset_version(layout.split_manifest)
    num_new = sum(1 for r in assigned if r["pixel_hash"] not in previous)
    log.info("split: %d images (%d new), dataset version %s", len(assigned), num_new, version)
    return SplitResult(
        manifest_path=layout.split_manifest,
        dataset_version=version,
        counts=counts,
        num_new=num_new,
    )


def read_split(manifest_path: Path, split: str) -> list[dict[str, Any]]:
    return [r for r in read_jsonl(manifest_path) if r["split"] == split]


def dataset_version(manifest_path: Path) -> str:
    """The content hash that names a dataset: the same split manifest, the same version."""
    return digest_records(read_jsonl(manifest_path))[:16]
