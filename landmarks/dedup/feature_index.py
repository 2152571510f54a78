"""Candidate pairs from shared local features: an inverted index over binary descriptors.

Each ORB descriptor (256 bits) is filed under ``tables`` keys, each key ``bits`` bits drawn at
fixed random positions of the descriptor (bit-sampling locality-sensitive hashing): two
descriptors of the same corner, a few bits apart, agree on a key with good probability,
unrelated ones almost never. An image *votes* for every image whose descriptors share a key
with its own; pairs with at least ``min_votes`` votes, the ``top_k`` best per image, are
candidates for verification. Buckets fuller than ``max_bucket`` (corners found everywhere:
sky gradients, windows, text) are skipped, as stop words are in a text index.

Buckets are a counting sort of every table's keys (``bincount`` + ``cumsum``), so a lookup is
two gathers and the whole search is vectorised over chunks of query images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from landmarks.dedup.hamming import ragged_arange

DESCRIPTOR_BITS = 256


@dataclass(frozen=True)
class IndexOptions:
    tables: int = 6
    bits: int = 20
    max_bucket: int = 16
    max_distance: int = 32  # a tight check votes for fewer unrelated images, so copies rank higher
    min_votes: int = 2
    top_k: int = 5
    top_k_mirror: int = 2  # for the mirror's queries, which find few copies (mirrored ones)
    seed: int = 20261129


@dataclass(frozen=True)
class Votes:
    """Query image ``query[k]`` shares ``votes[k]`` descriptor keys with image ``db[k]``."""

    query: np.ndarray  # int64
    db: np.ndarray  # int64
    votes: np.ndarray  # int32


# The ORB bits (``features``' settings) set in 30-70% of the descriptors of the real photos;
# most others are nearly constant and would crowd a key's values into a few buckets.
BALANCED_BITS = (
    1, 11, 18, 20, 21, 22, 26, 31, 32, 37, 38, 39, 41, 42, 45, 48, 56, 58, 59, 60, 61, 64, 65,
    67, 69, 73, 75, 78, 79, 89, 92, 94, 97, 98, 100, 102, 103, 106, 110, 111, 117, 118, 119,
    123, 124, 125, 127, 129, 131, 133, 136, 138, 141, 142, 143, 145, 147, 150, 153, 156, 158,
    160, 162, 163, 165, 170, 171, 178, 180, 182, 183, 185, 188, 193, 199, 201, 202, 204, 207,
    209, 223, 224, 227, 232, 236, 239, 247, 248, 249, 255,
)  # fmt: skip


def bit_positions(options: IndexOptions) -> np.ndarray:
    """(tables, bits) descriptor bit positions per table: balanced bits, shuffled by ``seed``,
    as disjoint as their number allows."""
    rng = np.random.default_rng(options.seed)
    pool = np.array(BALANCED_BITS)
    tables, order = [], rng.permutation(pool)
    for _ in range(options.tables):
        if len(order) < options.bits:
            order = np.concatenate([order, rng.permutation(pool)])
        tables.append(order[: options.bits])
        order = order[options.bits :]
    return np.stack(tables)


def descriptor_keys(descriptors: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """(n, 32) uint8 descriptors -> (n,) key made of the bits at ``positions`` (int32 up to 31
    bits, so that a key of 100,000 images' descriptors and its temporaries stay small)."""
    dtype: type[np.signedinteger] = np.int32 if len(positions) <= 31 else np.int64
    key: np.ndarray = np.zeros(len(descriptors), dtype=dtype)
    for j, b in enumerate(positions):
        bit = (descriptors[:, b >> 3] >> (7 - (b & 7))) & 1
        key |= bit.astype(dtype) << j
    return key


class FeatureIndex:
    """Inverted index of every image's descriptors, one bucket table per key."""

    def __init__(self, descriptor_sets: Sequence[np.ndarray], options: IndexOptions) -> None:
        counts = np.array([len(d) for d in descriptor_sets], dtype=np.int64)
        if counts.sum():
            stacked = np.concatenate([d for d in descriptor_sets if len(d)])
        else:
            stacked = np.zeros((0, 32), np.uint8)
        self._build(stacked, counts, options)

    @classmethod
    def from_stacked(
        cls, stacked: np.ndarray, counts: np.ndarray, options: IndexOptions
    ) -> FeatureIndex:
        """The index of ``counts[i]`` descriptors per image, stacked in one (n, 32) array
        (used as is, not copied)."""
        index = cls.__new__(cls)
        index._build(stacked, np.asarray(counts, dtype=np.int64), options)
        return index

    def _build(self, stacked: np.ndarray, counts: np.ndarray, options: IndexOptions) -> None:
        self.options = options
        self.num_images = len(counts)
        self.positions = bit_positions(options)
        owner = np.repeat(np.arange(self.num_images, dtype=np.int32), counts)
        self.words = np.ascontiguousarray(stacked).view(np.uint64)  # (n, 4)
        self.owner = owner
        self.starts: list[np.ndarray] = []
        self.sizes: list[np.ndarray] = []
        self.postings: list[np.ndarray] = []
        # how many descriptors share each image's keys: images of generic corners (foliage,
        # windows) collect votes from everything, so their votes count for less
        crowd = np.zeros(self.num_images, dtype=np.int64)
        first = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        described = counts > 0
        for positions in self.positions:
            keys = descriptor_keys(stacked, positions).astype(np.int32, copy=False)
            sizes = np.bincount(keys, minlength=1 << options.bits).astype(np.int32)
            starts = np.zeros(len(sizes), dtype=np.int64)
            np.cumsum(sizes[:-1], out=starts[1:])
            self.postings.append(np.argsort(keys, kind="stable").astype(np.int32))
            sizes[sizes > options.max_bucket] = 0  # stop words
            if len(keys):
                crowd[described] += np.add.reduceat(sizes[keys], first[described])
            del keys
            self.starts.append(starts)
            self.sizes.append(sizes)
        self.crowd = np.sqrt(crowd + 1.0)

    def votes(
        self,
        query_sets: Sequence[np.ndarray],
        chunk: int = 128,
        first: int = 0,
        top_k: int | None = None,
    ) -> Votes:
        """Votes of every query image (its descriptors) for every indexed image it shares a
        key with; pairs below ``min_votes`` and beyond the ``top_k`` per query (the options'
        unless given) are dropped. Query ``q`` is indexed image ``first + q``: self-votes are
        dropped. ``chunk`` query images are looked up at once: their bucket hits and the
        descriptors gathered for them (about 100 MiB per 128 images at 100,000 indexed images)
        are what the search holds in memory beyond the index."""
        top_k = self.options.top_k if top_k is None else top_k
        out_q, out_db, out_v = [], [], []
        n = self.num_images
        for start in range(0, len(query_sets), chunk):
            block = query_sets[start : start + chunk]
            counts = np.array([len(d) for d in block], dtype=np.int64)
            if not counts.sum():
                continue
            stacked = np.concatenate([d for d in block if len(d)])
            words = np.ascontiguousarray(stacked).view(np.uint64)
            feature_codes = []
            for positions, starts, sizes, posting in zip(
                self.positions, self.starts, self.sizes, self.postings, strict=True
            ):
                keys = descriptor_keys(stacked, positions)
                size = sizes[keys]
                hits = posting[ragged_arange(starts[keys], size)]
                query = np.repeat(np.arange(len(stacked), dtype=np.int64), size)
                close = (
                    np.bitwise_count(words[query] ^ self.words[hits]).sum(axis=1, dtype=np.int32)
                    <= self.options.max_distance
                )
                # one vote per query descriptor and indexed image, however many keys agree
                feature_codes.append(query[close] * n + self.owner[hits[close]])
            owner = np.repeat(np.arange(len(block), dtype=np.int64), counts)
            pairs = np.concatenate(feature_codes)
            pairs.sort()
            pairs = pairs[np.concatenate([[True], pairs[1:] != pairs[:-1]])]
            codes = owner[pairs // n] * n + pairs % n
            q, db, v = self._count(codes, first + start, n, top_k)
            out_q.append(q)
            out_db.append(db)
            out_v.append(v)
        if not out_q:
            empty = np.empty(0, dtype=np.int64)
            return Votes(empty, empty, np.empty(0, dtype=np.int32))
        return Votes(np.concatenate(out_q), np.concatenate(out_db), np.concatenate(out_v))

    def _count(
        self, codes: np.ndarray, start: int, n: int, top_k: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        codes.sort()
        edge = np.flatnonzero(np.diff(codes)) + 1
        first = np.concatenate([[0], edge]).astype(np.int64)
        votes = np.diff(np.concatenate([first, [len(codes)]])).astype(np.int32)
        unique = codes[first] if len(codes) else codes
        q, db = unique // n + start, unique % n
        keep = (votes >= self.options.min_votes) & (q != db)
        q, db, votes = q[keep], db[keep], votes[keep]
        # the top_k per query by votes over the indexed image's crowding
        order = np.lexsort((-votes / self.crowd[db], q))
        q, db, votes = q[order], db[order], votes[order]
        rank = np.arange(len(q)) - np.searchsorted(q, q, side="left")
        keep = rank < top_k
        return q[keep], db[keep], votes[keep]
