"""Hamming-radius search over 64-bit hashes: multi-index hashing, vectorised with numpy.

Every hash is cut into ``m`` chunks. Two hashes within distance ``r`` agree to within
``r // m`` bits on at least one chunk (pigeonhole), so each query probes, for every chunk, the
buckets of the chunk values within ``r // m`` bits of its own, and only the hashes found there
are compared in full. Buckets are a counting sort of each chunk (``bincount`` + ``cumsum``), a
probe is a gather over all queries at once, and the candidates of a probe are expanded and
checked with ``np.bitwise_count`` without a Python loop over hashes.

The cost is set by the chunk width: wide chunks mean few hashes per bucket but many probe
masks. With ``n`` database hashes, chunks of about ``log2(n)`` bits balance the two
(Norouzi, Punjani and Fleet, "Fast search in Hamming space with multi-index hashing", 2012).
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from itertools import combinations

import numpy as np

WORD_BITS = 64


@dataclass(frozen=True)
class Matches:
    """Hash-level matches: ``query[k]`` is within ``distance[k]`` of ``db[k]`` (indices)."""

    query: np.ndarray  # int64
    db: np.ndarray  # int64
    distance: np.ndarray  # int16


def _flip_masks(bits: int, radius: int) -> np.ndarray:
    masks = [0]
    for k in range(1, radius + 1):
        for combo in combinations(range(bits), k):
            masks.append(sum(1 << b for b in combo))
    return np.array(masks, dtype=np.int64)


def plan_chunks(num_db: int, radius: int) -> int:
    """How many chunks to cut 64 bits into for ``num_db`` hashes and ``radius``: the count
    that minimises probes + expected candidates (bucket loads assume spread-out hashes)."""
    best, best_cost = 1, math.inf
    for m in range(1, 9):
        bits = math.ceil(WORD_BITS / m)
        if bits > 24:  # the bucket table would not fit in memory
            continue
        s = radius // m
        probes = m * sum(math.comb(bits, k) for k in range(s + 1))
        candidates = probes * num_db / 2**bits
        cost = probes * 4 + candidates  # a probe costs a few gathers, a candidate one popcount
        if cost < best_cost:
            best, best_cost = m, cost
    return best


def ragged_arange(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """concatenate(arange(s, s + c) for s, c) without a Python loop."""
    total = int(counts.sum())
    if total == 0:
        return np.empty(0, dtype=np.int64)
    ends = np.cumsum(counts)
    offsets = np.repeat(starts - (ends - counts), counts)
    return np.arange(total, dtype=np.int64) + offsets


def _search_block(
    queries: np.ndarray, db: np.ndarray, radius: int, num_chunks: int, mask_batch: int = 64
) -> Matches:
    bits = math.ceil(WORD_BITS / num_chunks)
    s = radius // num_chunks
    q_all, d_all, dist_all = [], [], []
    for c in range(num_chunks):
        shift = c * bits
        width = min(bits, WORD_BITS - shift)
        if width <= 0:
            break
        chunk_mask = np.uint64((1 << width) - 1)
        db_keys = ((db >> np.uint64(shift)) & chunk_mask).astype(np.int64)
        q_keys = ((queries >> np.uint64(shift)) & chunk_mask).astype(np.int64)
        counts = np.bincount(db_keys, minlength=1 << width).astype(np.int32)
        starts = (np.cumsum(counts, dtype=np.int64) - counts).astype(np.int64)
        order = np.argsort(db_keys, kind="stable")
        masks = _flip_masks(width, s)
        for m0 in range(0, len(masks), mask_batch):
            probe = q_keys[None, :] ^ masks[m0 : m0 + mask_batch, None]  # (masks, queries)
            n = counts[probe].ravel()
            hit = np.nonzero(n)[0]
            if hit.size == 0:
                continue
            n_hit = n[hit]
            qi = np.repeat(hit % len(queries), n_hit)
            di = order[ragged_arange(starts[probe.ravel()[hit]], n_hit)]
            dist = np.bitwise_count(queries[qi] ^ db[di]).astype(np.int16)
            keep = dist <= radius
            q_all.append(qi[keep])
            d_all.append(di[keep])
            dist_all.append(dist[keep])
    if not q_all:
        empty = np.empty(0, dtype=np.int64)
        return Matches(empty, empty, np.empty(0, dtype=np.int16))
    q = np.concatenate(q_all)
    d = np.concatenate(d_all)
    dist = np.concatenate(dist_all)
    # The same pair is found once per chunk it agrees on; keep one.
    key = q * len(db) + d
    _, first = np.unique(key, return_index=True)
    return Matches(q[first], d[first], dist[first])


def _search_worker(args: tuple[np.ndarray, np.ndarray, int, int, int]) -> Matches:
    queries, db, radius, num_chunks, offset = args
    found = _search_block(queries, db, radius, num_chunks)
    return Matches(found.query + offset, found.db, found.distance)


def radius_search(
    queries: np.ndarray,
    db: np.ndarray,
    radius: int,
    num_workers: int = 1,
    num_chunks: int | None = None,
) -> Matches:
    """Every (query, db) index pair whose 64-bit hashes differ in at most ``radius`` bits.

    Args:
        queries: (nq,) uint64 hashes.
        db: (nd,) uint64 hashes.
        num_workers: processes to split the queries over (0: one per CPU).
    """
    queries = np.ascontiguousarray(queries, dtype=np.uint64).ravel()
    db = np.ascontiguousarray(db, dtype=np.uint64).ravel()
    m = num_chunks or plan_chunks(len(db), radius)
    workers = num_workers or os.cpu_count() or 1
    if workers <= 1 or len(queries) < 20_000:
        return _search_block(queries, db, radius, m)
    bounds = np.linspace(0, len(queries), workers + 1).astype(int)
    jobs = [(queries[a:b], db, radius, m, a) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    with ProcessPoolExecutor(workers) as pool:
        parts = list(pool.map(_search_worker, jobs))
    return Matches(
        np.concatenate([p.query for p in parts]),
        np.concatenate([p.db for p in parts]),
        np.concatenate([p.distance for p in parts]),
    )


def brute_force(queries: np.ndarray, db: np.ndarray, radius: int, chunk: int = 512) -> Matches:
    """The reference the index must agree with: all pairs, chunked."""
    queries = np.asarray(queries, dtype=np.uint64).ravel()
    db = np.asarray(db, dtype=np.uint64).ravel()
    q_all, d_all, dist_all = [], [], []
    for a in range(0, len(queries), chunk):
        dist = np.bitwise_count(queries[a : a + chunk, None] ^ db[None, :])
        qi, di = np.nonzero(dist <= radius)
        q_all.append(qi + a)
        d_all.append(di)
        dist_all.append(dist[qi, di].astype(np.int16))
    if not q_all:
        empty = np.empty(0, dtype=np.int64)
        return Matches(empty, empty, np.empty(0, dtype=np.int16))
    return Matches(
        np.concatenate(q_all).astype(np.int64),
        np.concatenate(d_all).astype(np.int64),
        np.concatenate(dist_all),
    )
