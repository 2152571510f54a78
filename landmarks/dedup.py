"""Dedup stage: exact and near-duplicate groups, one keeper each, and label conflicts.

Exact duplicates share a hash of their decoded pixels. Near duplicates are found with
imagehash's perceptual hash (pHash) compared against all eight dihedral variants (flips
and 90-degree rotations) of every other image, with a vectorised Hamming search. Groups are
the connected components of the "within threshold" relation. A group whose members carry
different labels is a label conflict: every member is dropped and reported.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import imagehash
import numpy as np
from PIL import Image

from landmarks.storage import (
    Layout,
    append_jsonl,
    atomic_write_json,
    digest_records,
    read_json,
    read_jsonl,
    write_jsonl,
)

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
NUM_VARIANTS = 8


@dataclass(frozen=True)
class DedupOptions:
    hash_size: int = 8
    threshold: int = 10


@dataclass(frozen=True)
class DedupResult:
    num_images: int
    num_kept: int
    num_duplicates: int
    num_groups: int
    num_conflicts: int
    report_path: Path
    kept_path: Path
    reused: bool


def dihedral_phashes(im: Image.Image, hash_size: int = 8) -> list[str]:
    """pHash (hex) of the 8 dihedral variants of ``im``: rotations by 90 degrees, with and
    without a horizontal flip. Variant 0 is the image itself."""
    side = hash_size * 4  # imagehash.phash's default highfreq_factor
    grey = np.asarray(im.convert("L").resize((side, side), Image.Resampling.LANCZOS))
    hashes = []
    for flip in (False, True):
        base = np.fliplr(grey) if flip else grey
        for k in range(4):
            variant = Image.fromarray(np.ascontiguousarray(np.rot90(base, k)))
            hashes.append(str(imagehash.phash(variant, hash_size=hash_size)))
    return hashes


def hex_to_words(hex_hashes: Iterable[str]) -> np.ndarray:
    """Hex hashes -> uint64 array of shape (n, words)."""
    rows = []
    for h in hex_hashes:
        h = h.rjust(((len(h) + 15) // 16) * 16, "0")
        rows.append([int(h[i : i + 16], 16) for i in range(0, len(h), 16)])
    return np.array(rows, dtype=np.uint64).reshape(len(rows), -1)


def near_pairs(
    base: np.ndarray, variants: np.ndarray, threshold: int, chunk: int = 256
) -> list[tuple[int, int, int]]:
    """All pairs (i, j, distance), i < j, with min over variants of Hamming(base_i, variant_j)
    at most ``threshold``.

    Args:
        base: (n, words) uint64, the hash of every image as it is.
        variants: (n, v, words) uint64, the hashes of every image's variants.
    """
    n = base.shape[0]
    pairs: list[tuple[int, int, int]] = []
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        xor = base[start:stop, None, None, :] ^ variants[None, :, :, :]
        dist = np.bitwise_count(xor).sum(axis=-1, dtype=np.int32).min(axis=-1)
        rows, cols = np.nonzero(dist <= threshold)
        for i, j in zip(rows + start, cols, strict=True):
            if i < j:
                pairs.append((int(i), int(j), int(dist[i - start, j])))
            elif j < i:
                # the relation is not exactly symmetric under variants; keep the smaller
                pairs.append((int(j), int(i), int(dist[i - start, j])))
    best: dict[tuple[int, int], int] = {}
    for i, j, d in pairs:
        if best.get((i, j), 1 << 30) > d:
            best[(i, j)] = d
    return [(i, j, d) for (i, j), d in sorted(best.items())]


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _keeper_key(record: dict[str, Any]) -> tuple:
    pixels = record.get("source_width", 0) * record.get("source_height", 0)
    return (-pixels, -record.get("raw_bytes", 0), record["path"])


def find_groups(
    records: list[dict[str, Any]], hashes: list[list[str]], threshold: int
) -> tuple[list[dict[str, Any]], list[int]]:
    """Group records by exact pixel hash and near-duplicate pHash.

    Returns (groups, kept_indices): each group is {keeper, members: [(index, distance)],
    classes}; groups of one are not listed. ``kept_indices`` holds the keeper of every
    consistent group and every singleton; members of label conflicts are not kept.
    """
    n = len(records)
    uf = _UnionFind(n)
    distance: dict[tuple[int, int], int] = {}
    by_pixels: dict[str, int] = {}
    for i, r in enumerate(records):
        first = by_pixels.setdefault(r["pixel_hash"], i)
        if first != i:
            uf.union(first, i)
            distance[(first, i)] = 0
    if n:
        base = hex_to_words(h[0] for h in hashes)
        variants = hex_to_words(v for h in hashes for v in h).reshape(n, len(hashes[0]), -1)
        for i, j, d in near_pairs(base, variants, threshold):
            uf.union(i, j)
            distance.setdefault((i, j), d)
    members: dict[int, list[int]] = {}
    for i in range(n):
        members.setdefault(uf.find(i), []).append(i)
    groups: list[dict[str, Any]] = []
    kept: list[int] = []
    for idx in members.values():
        keeper = min(idx, key=lambda k: _keeper_key(records[k]))
        classes = sorted({records[k]["class"] for k in idx})
        if len(idx) == 1:
            kept.append(keeper)
            continue
        dups = []
        for k in idx:
            if k == keeper:
                continue
            pair = (min(k, keeper), max(k, keeper))
            dups.append((k, distance.get(pair)))
        groups.append({"keeper": keeper, "members": dups, "classes": classes})
        if len(classes) == 1:
            kept.append(keeper)
    return groups, sorted(kept)


def _load_hash_cache(path: Path, hash_size: int) -> dict[str, list[str]]:
    return {
        r["sha256"]: r["phash"]
        for r in read_jsonl(path)
        if r.get("hash_size") == hash_size and len(r.get("phash", [])) == NUM_VARIANTS
    }


def dedup_clean(
    layout: Layout,
    clean_records: list[dict[str, Any]],
    options: DedupOptions,
    progress: Progress | None = None,
) -> DedupResult:
    """Find duplicate groups among ``clean_records`` and write the report and kept list.

    Perceptual hashes are cached per clean file (``dedup/hashes.jsonl``); an unchanged input
    with unchanged options reuses the previous report without any work.
    """
    records = sorted(clean_records, key=lambda r: r["path"] + "|" + r["raw_path"])
    input_digest = digest_records(
        [{"p": r["path"], "s": r["sha256"], "c": r["class"], "r": r["raw_path"]} for r in records]
        + [{"options": [options.hash_size, options.threshold]}]
    )
    kept_path = layout.dedup_dir / "kept.jsonl"
    if layout.dedup_report.exists() and kept_path.exists():
        previous = read_json(layout.dedup_report)
        if previous.get("input_digest") == input_digest:
            log.info("dedup: input unchanged, reusing %s", layout.dedup_report)
            return _result_from_report(previous, layout, kept_path, reused=True)

    cache_path = layout.dedup_dir / "hashes.jsonl"
    cache = _load_hash_cache(cache_path, options.hash_size)
    new_rows = []
    hashes: list[list[str]] = []
    for i, r in enumerate(records, start=1):
        if r["sha256"] not in cache:
            with Image.open(layout.clean_dir / r["path"]) as im:
                im.draft("L", (options.hash_size * 8, options.hash_size * 8))
                cache[r["sha256"]] = dihedral_phashes(im, options.hash_size)
            new_rows.append(
                {"sha256": r["sha256"], "hash_size": options.hash_size, "phash": cache[r["sha256"]]}
            )
            if len(new_rows) >= 200:
                append_jsonl(cache_path, new_rows)
                new_rows = []
        hashes.append(cache[r["sha256"]])
        if progress:
            progress(i, len(records))
    append_jsonl(cache_path, new_rows)

    groups, kept = find_groups(records, hashes, options.threshold)
    report_groups = []
    conflicts = []
    for g in groups:
        keeper = records[g["keeper"]]
        entry = {
            "keeper": keeper["path"],
            "class": keeper["class"],
            "duplicates": [
                {
                    "path": records[k]["path"],
                    "class": records[k]["class"],
                    "raw_path": records[k]["raw_path"],
                    "distance": d,
                }
                for k, d in g["members"]
            ],
        }
        if len(g["classes"]) > 1:
            entry["classes"] = g["classes"]
            conflicts.append(entry)
        else:
            report_groups.append(entry)
    kept_records = []
    for k in kept:
        r = records[k]
        kept_records.append({**r, "phash": hashes[k][0]})
    write_jsonl(kept_path, kept_records)
    report = {
        "input_digest": input_digest,
        "options": {"hash_size": options.hash_size, "threshold": options.threshold},
        "num_images": len(records),
        "num_kept": len(kept_records),
        "num_duplicates": sum(len(g["duplicates"]) for g in report_groups),
        "groups": report_groups,
        "label_conflicts": conflicts,
    }
    atomic_write_json(layout.dedup_report, report)
    log.info(
        "dedup: %d images, %d kept, %d groups, %d label conflicts",
        len(records),
        len(kept_records),
        len(report_groups),
        len(conflicts),
    )
    return _result_from_report(report, layout, kept_path, reused=False)


def _result_from_report(
    report: dict[str, Any], layout: Layout, kept_path: Path, reused: bool
) -> DedupResult:
    return DedupResult(
        num_images=report["num_images"],
        num_kept=report["num_kept"],
        num_duplicates=report["num_duplicates"],
        num_groups=len(report["groups"]),
        num_conflicts=len(report["label_conflicts"]),
        report_path=layout.dedup_report,
        kept_path=kept_path,
        reused=reused,
    )
