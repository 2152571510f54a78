"""Candidate pairs from shared local features: an inverted index over binary descriptors.

Each ORB descriptor (256 bits) is filed under ``tables`` keys, each key made of bits drawn at
fixed random positions of the descriptor (bit-sampling locality-sensitive hashing): two
descriptors of the same corner, a few bits apart, agree on a key with good probability,
unrelated ones almost never. An image *votes* for every image whose descriptors share a key
with its own; pairs with at least ``min_votes`` votes, the ``top_k`` best per image, are
candidates for verification. Buckets fuller than ``max_bucket`` (corners found everywhere:
sky gradients, windows, text) are skipped, as stop words are in a text index.

Keys have ``bits`` bits, one more per doubling of the indexed descriptors beyond ``2**bits``
(up to ``max_bits``), so buckets stay about as full at 100,000 images as at 1,000. A bucket
holds, per descriptor, one word: its image and a *sketch* (other balanced bits of the
descriptor), so a lookup reads its bucket contiguously and checks the sketch's Hamming
distance (``max_distance`` of 256, in proportion) without gathering the full descriptors.
Words have 64 bits (a sketch of about 50 bits) while all tables' words take under 256 MiB,
32 beyond (at 100,000 images: a 15-bit sketch).

Keys and sketches are computed with one lookup table per descriptor byte (for a query, one
lookup for all tables). A table is one sort of its words by key; bucket starts are kept in two
levels (a start per group of buckets, a 16-bit offset per bucket), so that 2**24 buckets take
32 MiB per table.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

DESCRIPTOR_BITS = 256
# descriptors whose keys are computed at once while building (a few MiB of temporaries)
BUILD_CHUNK = 1 << 16
# a bucket word (uint32) holds the image and at least 8 bits of sketch
MAX_OWNER_BITS = 24
# threads that compute and sort the parts of a table's keys at once (the results do not depend
# on them)
BUILD_THREADS = 2
# bucket words of 64 bits (a longer sketch) for up to this many filed descriptors (256 MiB)
WIDE_WORDS = 1 << 25


@dataclass(frozen=True)
class IndexOptions:
    tables: int = 6
    bits: int = 20  # key bits up to 2**bits indexed descriptors
    max_bits: int = 24  # beyond: one bit more per doubling, up to this
    max_bucket: int = 16
    # of 256 bits, on the sketch its share of them; a tight check votes for fewer unrelated
    # images, so copies rank higher
    max_distance: int = 40
    min_votes: int = 2
    top_k: int = 4
    top_k_mirror: int = 2  # for the mirror's queries, which find few copies (mirrored ones)
    top_k_coarse: int = 3  # for the coarse view's queries (as many copies for fewer verifications)
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


def key_bits(options: IndexOptions, num_descriptors: int) -> int:
    """Bits per key for ``num_descriptors`` indexed descriptors (about one per bucket)."""
    return max(options.bits, min(options.max_bits, int(num_descriptors).bit_length()))


def bit_positions(options: IndexOptions, bits: int | None = None) -> np.ndarray:
    """(tables, bits) descriptor bit positions per table: balanced bits, shuffled by ``seed``,
    as disjoint as their number allows."""
    bits = options.bits if bits is None else bits
    rng = np.random.default_rng(options.seed)
    pool = np.array(BALANCED_BITS)
    tables, order = [], rng.permutation(pool)
    for _ in range(options.tables):
        if len(order) < bits:
            order = np.concatenate([order, rng.permutation(pool)])
        tables.append(order[:bits])
        order = order[bits:]
    return np.stack(tables)


def sketch_positions(options: IndexOptions, keys: np.ndarray, width: int) -> np.ndarray:
    """(tables, width) balanced bit positions per table, none of them in the table's key."""
    rng = np.random.default_rng(options.seed + 1)
    pool = np.array(BALANCED_BITS)
    rows = []
    for key in keys:
        others = rng.permutation(pool[~np.isin(pool, key)])
        rows.append(others[:width])
    return np.stack(rows)


def byte_tables(key: np.ndarray, sketch: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """``(byte, table)`` pairs: ``table[v]`` (2 uint64) puts the key's and the sketch's bits
    found in a descriptor byte of value ``v`` at their places in the key and the sketch."""
    values = np.arange(256, dtype=np.uint64)
    tables: dict[int, np.ndarray] = {}
    for column, positions in enumerate((key, sketch)):
        for j, b in enumerate(positions.tolist()):
            table = tables.setdefault(b >> 3, np.zeros((256, 2), np.uint64))
            table[:, column] |= ((values >> np.uint64(7 - (b & 7))) & np.uint64(1)) << np.uint64(j)
    return sorted(tables.items())


def descriptor_codes(descriptors: np.ndarray, tables: list[tuple[int, np.ndarray]]) -> np.ndarray:
    """(n, 32) uint8 descriptors -> (n, 2) uint64: key and sketch (see ``byte_tables``); with
    the tables of t tables stacked (``stack_tables``): (n, 2 t)."""
    code = np.zeros((len(descriptors), tables[0][1].shape[1] if tables else 2), np.uint64)
    for byte, table in tables:
        code |= np.take(table, descriptors[:, byte], axis=0)
    return code


def stack_tables(per_table: list[list[tuple[int, np.ndarray]]]) -> list[tuple[int, np.ndarray]]:
    """The byte tables of several tables as one: ``(byte, (256, 2 tables) uint64)`` pairs, so
    that a descriptor byte is looked up once for all of them."""
    stacked = np.zeros((DESCRIPTOR_BITS // 8, 256, 2 * len(per_table)), dtype=np.uint64)
    for t, tables in enumerate(per_table):
        for byte, table in tables:
            stacked[byte, :, 2 * t : 2 * t + 2] = table
    return [(byte, stacked[byte]) for byte in range(len(stacked)) if stacked[byte].any()]


def owners(ends: np.ndarray, start: int, stop: int) -> np.ndarray:
    """The image of each stacked descriptor ``start..stop-1`` (``ends``: the images' cumulative
    descriptor counts)."""
    first = int(np.searchsorted(ends, start, side="right"))
    last = int(np.searchsorted(ends, stop - 1, side="right")) if stop > start else first - 1
    counts = np.diff(np.minimum(ends[first : last + 1], stop), prepend=start)
    return np.repeat(np.arange(first, last + 1), counts)


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
        (read, not kept)."""
        index = cls.__new__(cls)
        index._build(stacked, np.asarray(counts, dtype=np.int64), options)
        return index

    def _build(self, stacked: np.ndarray, counts: np.ndarray, options: IndexOptions) -> None:
        self.options = options
        self.num_images = len(counts)
        self.bits = key_bits(options, len(stacked))
        self.positions = bit_positions(options, self.bits)
        # a bucket word: the image in the high bits, the sketch in the others; 64 bits while
        # the words take little memory, 32 beyond (a shorter sketch)
        owner_bits = max(1, self.num_images.bit_length())  # room for "no image": num_images
        if owner_bits > MAX_OWNER_BITS:
            raise ValueError(f"an index holds at most 2**{MAX_OWNER_BITS} images")
        wide = len(stacked) * options.tables <= WIDE_WORDS
        self.word: type[np.unsignedinteger] = np.uint64 if wide else np.uint32
        word_bits = 8 * np.dtype(self.word).itemsize
        self.sketch_bits = min(word_bits - owner_bits, len(BALANCED_BITS) - self.bits)
        self.max_sketch_distance = round(options.max_distance * self.sketch_bits / DESCRIPTOR_BITS)
        sketches = sketch_positions(options, self.positions, self.sketch_bits)
        self.byte_tables = [
            byte_tables(k, s) for k, s in zip(self.positions, sketches, strict=True)
        ]
        self.query_tables = stack_tables(self.byte_tables)
        # starts of the buckets: a group's in int64, a bucket's offset in its group in uint16
        self.group_bits = min(self.bits, (0xFFFF // max(1, options.max_bucket)).bit_length() - 1)
        self.group_starts: list[np.ndarray] = []
        self.offsets: list[np.ndarray] = []
        self.postings: list[np.ndarray] = []
        # how many descriptors share each image's keys: images of generic corners (foliage,
        # windows) collect votes from everything, so their votes count for less
        crowd = np.zeros(self.num_images, dtype=np.float64)
        ends = np.cumsum(counts)
        threads = max(1, BUILD_THREADS)
        with ThreadPoolExecutor(threads) as pool:
            for tables in self.byte_tables:
                # the table's bucket words sorted by key (stop words dropped), its bucket
                # sizes and the crowd it adds per image
                if self.word == np.uint64:
                    words, sizes, table_crowd = self._wide_table(stacked, ends, tables)
                else:
                    words, sizes, table_crowd = self._narrow_table(
                        stacked, ends, tables, pool, threads
                    )
                crowd += table_crowd
                self._set_starts(sizes)
                self.postings.append(words)
        self.crowd = np.sqrt(crowd + 1.0)

    def _wide_table(
        self, stacked: np.ndarray, ends: np.ndarray, tables: list[tuple[int, np.ndarray]]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A table of 64-bit words: a stable sort of the keys (a small index)."""
        code = descriptor_codes(stacked, tables)
        owner = owners(ends, 0, len(stacked))
        words = code[:, 1] | (owner.astype(np.uint64) << np.uint64(self.sketch_bits))
        keys = code[:, 0].astype(np.intp)
        sizes = np.bincount(keys, minlength=1 << self.bits).astype(np.int32)
        sizes[sizes > self.options.max_bucket] = 0  # stop words
        order = np.argsort(keys, kind="stable")
        order = order[sizes[keys[order]] > 0]
        weight = sizes[keys[order]]
        crowd = np.bincount(owner[order], weights=weight, minlength=self.num_images)
        return words[order], sizes, crowd

    def _narrow_table(
        self,
        stacked: np.ndarray,
        ends: np.ndarray,
        tables: list[tuple[int, np.ndarray]],
        pool: ThreadPoolExecutor,
        threads: int,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A table of 32-bit words: one sort of ``key << 32 | word`` per descriptor (its
        parts in ``pool``'s threads, then merged); the words are then written over the
        sorted array's own memory, which is shrunk to them."""
        packed = np.empty(len(stacked), dtype=np.uint64)
        shift = np.uint64(self.sketch_bits)
        cuts = [len(stacked) * k // threads // BUILD_CHUNK * BUILD_CHUNK for k in range(threads)]
        parts = [slice(a, b) for a, b in zip(cuts, cuts[1:] + [len(stacked)], strict=True)]

        # per descriptor byte, its key bits and sketch bits at once: ``key << 32 | sketch``
        both = [(byte, (t[:, 0] << np.uint64(32)) | t[:, 1]) for byte, t in tables]

        def part(span: slice) -> None:
            for s in range(span.start, span.stop, BUILD_CHUNK):
                e = min(span.stop, s + BUILD_CHUNK)
                out = packed[s:e]
                out[:] = owners(ends, s, e).astype(np.uint64) << shift
                chunk = stacked[s:e]
                for byte, table in both:
                    out |= np.take(table, chunk[:, byte])
            packed[span].sort()

        list(pool.map(part, parts))
        if threads > 1:
            packed.sort(kind="stable")  # a merge of the sorted parts
        sizes = np.zeros(1 << self.bits, dtype=np.int32)
        for s in range(0, len(packed), BUILD_CHUNK):
            keys = packed[s : s + BUILD_CHUNK] >> np.uint64(32)
            edge = np.flatnonzero(keys[1:] != keys[:-1]) + 1
            runs = np.diff(np.concatenate([[0], edge, [len(keys)]]))
            sizes[keys[np.concatenate([[0], edge])]] += runs.astype(np.int32)
        sizes[sizes > self.options.max_bucket] = 0  # stop words
        crowd = np.zeros(self.num_images, dtype=np.float64)
        words = packed.view(np.uint32)  # word k overwrites packed[k // 2], already read
        kept = 0
        for s in range(0, len(packed), BUILD_CHUNK):
            chunk = packed[s : s + BUILD_CHUNK]
            size = sizes[chunk >> np.uint64(32)]
            chunk = chunk[size > 0].astype(np.uint32)  # the low 32 bits
            owner = (chunk >> np.uint32(self.sketch_bits)).astype(np.intp)
            crowd += np.bincount(owner, weights=size[size > 0], minlength=self.num_images)
            words[kept : kept + len(chunk)] = chunk
            kept += len(chunk)
        del words
        packed.resize((kept + 1) // 2, refcheck=False)
        return packed.view(np.uint32)[:kept], sizes, crowd

    def _set_starts(self, sizes: np.ndarray) -> None:
        groups = sizes.reshape(-1, 1 << self.group_bits)
        within = np.cumsum(groups, axis=1, dtype=np.int32)
        offsets = np.zeros(len(sizes) + 1, dtype=np.uint16)
        offsets[:-1] = (within - groups).ravel()
        starts = np.zeros(len(groups) + 1, dtype=np.int64)
        np.cumsum(within[:, -1], out=starts[1:])
        self.group_starts.append(starts)
        self.offsets.append(offsets)

    def votes(
        self,
        query_sets: Sequence[np.ndarray],
        chunk: int = 128,
        first: int = 0,
        top_k: int | None = None,
    ) -> Votes:
        """Votes of every query image (its descriptors) for every indexed image it shares a
        key and a close sketch with; pairs below ``min_votes`` and beyond the ``top_k`` per
        query (the options' unless given) are dropped. Query ``q`` is indexed image
        ``first + q``: self-votes are dropped. ``chunk`` query images are looked up at once:
        their bucket hits (a few MiB per 128 images) are what the search holds in memory
        beyond the index."""
        top_k = self.options.top_k if top_k is None else top_k
        out_q, out_db, out_v = [], [], []
        n = self.num_images
        for start in range(0, len(query_sets), chunk):
            block = query_sets[start : start + chunk]
            counts = np.array([len(d) for d in block], dtype=np.int64)
            if not counts.sum():
                continue
            stacked = np.concatenate([d for d in block if len(d)])
            image = np.repeat(np.arange(len(block), dtype=np.int64), counts)
            own = image + (first + start)  # the query's own image; n: none
            own[(own < 0) | (own > n)] = n
            table_codes = descriptor_codes(stacked, self.query_tables)
            pairs = np.concatenate(
                [
                    self._lookup(table_codes[:, 2 * t : 2 * t + 2], own, t)
                    for t in range(len(self.postings))
                ]
            )
            if not len(pairs):
                continue
            # one vote per query descriptor and indexed image, however many keys agree
            pairs.sort()
            pairs = pairs[np.concatenate([[True], pairs[1:] != pairs[:-1]])]
            codes = image[pairs // n] * n + pairs % n
            q, db, v = self._count(codes, first + start, n, top_k)
            out_q.append(q)
            out_db.append(db)
            out_v.append(v)
        if not out_q:
            empty = np.empty(0, dtype=np.int64)
            return Votes(empty, empty, np.empty(0, dtype=np.int32))
        return Votes(np.concatenate(out_q), np.concatenate(out_db), np.concatenate(out_v))

    def _lookup(self, code: np.ndarray, own: np.ndarray, table: int) -> np.ndarray:
        """``descriptor * num_images + image`` of every indexed image but the query's own
        (``own`` per query descriptor; ``num_images``: none) with a descriptor in the bucket
        of a query descriptor (its ``code`` in ``table``) whose sketch is close to its own."""
        keys = code[:, 0].astype(np.intp)
        # the query's own word: a bucket word differs from it in its image bits unless it
        # is the query image's, and in its sketch bits by the sketches' distance
        word = code[:, 1].astype(self.word) | (own.astype(self.word) << self.word(self.sketch_bits))
        starts, offsets = self.group_starts[table], self.offsets[table]
        begin = starts[keys >> self.group_bits] + offsets[keys]
        keys += 1
        size = starts[keys >> self.group_bits] + offsets[keys] - begin
        ends = np.cumsum(size)
        if not len(ends) or not ends[-1]:
            return np.empty(0, dtype=np.int64)
        # the bucket words of all of them: concatenate(arange(b, b + s) for b, s)
        at = np.repeat(begin - (ends - size), size)
        at += np.arange(len(at))
        hits = self.postings[table][at]
        hits ^= np.repeat(word, size)
        mask = self.word((1 << self.sketch_bits) - 1)
        close = np.bitwise_count(hits & mask) <= self.max_sketch_distance
        close &= hits > mask  # not the query's own image
        found = np.flatnonzero(close)
        query = np.searchsorted(ends, found, side="right")
        owner = (hits[found] >> self.word(self.sketch_bits)).astype(np.int64)
        owner ^= own[query]
        return query * self.num_images + owner

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
