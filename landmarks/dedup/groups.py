"""Groups: connected components of confirmed pairs, the keeper rule and label conflicts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from landmarks.dedup import hashing
from landmarks.dedup.pairs import Pair, UnionFind, pair_distance


def _keeper_key(record: dict[str, Any]) -> tuple:
    pixels = record.get("source_width", 0) * record.get("source_height", 0)
    return (-pixels, -record.get("raw_bytes", 0), record["path"])


def find_groups(
    records: list[dict[str, Any]],
    hashes: Sequence[hashing.ImageHashes],
    pairs: Sequence[Pair],
) -> tuple[list[dict[str, Any]], list[int]]:
    """Group records by exact pixel hash and confirmed near-duplicate pairs.

    Every record needs ``pixel_hash``, ``class``, ``path`` and, for the keeper rule (highest
    resolution, then largest file), ``source_width``, ``source_height``, ``raw_bytes``.

    Returns (groups, kept_indices): each group is {keeper, members: [(index, distance, how)],
    classes}; groups of one are not listed. ``kept_indices`` holds the keeper of every
    consistent group and every singleton; members of label conflicts are not kept.
    """
    n = len(records)
    uf = UnionFind(n)
    how: dict[tuple[int, int], str] = {}
    by_pixels: dict[str, int] = {}
    for i, r in enumerate(records):
        first = by_pixels.setdefault(r["pixel_hash"], i)
        if first != i:
            uf.union(first, i)
            how[(first, i)] = "exact"
    for p in pairs:
        uf.union(p.i, p.j)
        how.setdefault((min(p.i, p.j), max(p.i, p.j)), p.how)
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
            if records[k]["pixel_hash"] == records[keeper]["pixel_hash"]:
                dups.append((k, 0, "exact"))
            else:
                # "linked" members reached the keeper through another member of the group.
                dups.append((k, pair_distance(hashes[keeper], hashes[k]), how.get(pair, "linked")))
        groups.append({"keeper": keeper, "members": dups, "classes": classes})
        if len(classes) == 1:
            kept.append(keeper)
    return groups, sorted(kept)
