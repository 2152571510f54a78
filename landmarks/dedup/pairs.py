"""Near-duplicate pairs: pHash candidates, their verification, and local-feature pairs."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import imagehash
import numpy as np
from PIL import Image

from landmarks.dedup import candidates as dedup_features
from landmarks.dedup import features, hamming, hashing
from landmarks.dedup import verify as verifier

if TYPE_CHECKING:
    from landmarks.dedup.stage import DedupOptions

log = logging.getLogger(__name__)
NUM_VARIANTS = hashing.NUM_DIHEDRAL
# (step, done, total) of the local-feature route: "search" in images, "verify" in pairs
StepProgress = Callable[[str, int, int], None]
# feature candidates are verified in blocks of this many, best voted first (pairs a block
# groups need no verification in a later one)
VERIFY_BLOCK = 512


@dataclass(frozen=True)
class Pair:
    """``dihedral(j, variant)`` matched ``i`` (or a centre crop of ``i``) at ``distance``."""

    i: int
    j: int
    distance: int
    variant: int
    how: str  # "exact", "hash" (within sure_distance), "verified" or "features"


def dihedral_phashes(im: Image.Image, hash_size: int = 8) -> list[str]:
    """pHash (hex) of the 8 dihedral variants of ``im``: rotations by 90 degrees, with and
    without a horizontal flip. Variant 0 is the image itself. Same bits as
    ``imagehash.phash`` of each variant."""
    side = hash_size * hashing.HIGHFREQ_FACTOR
    grey = im.convert("L").resize((side, side), Image.Resampling.LANCZOS)
    return hashing.hash_grey(grey, hash_size, (), square=False).hex()


def naive_phash(path: Path, hash_size: int = 8) -> str:
    """The baseline the benchmark compares with: imagehash on the fully decoded file."""
    with Image.open(path) as im:
        return str(imagehash.phash(im, hash_size=hash_size))


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
    at most ``threshold``; brute force, any hash length.

    Args:
        base: (n, words) uint64, the hash of every image as it is.
        variants: (n, v, words) uint64, the hashes of every image's variants.
    """
    n = base.shape[0]
    best: dict[tuple[int, int], int] = {}
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        xor = base[start:stop, None, None, :] ^ variants[None, :, :, :]
        dist = np.bitwise_count(xor).sum(axis=-1, dtype=np.int32).min(axis=-1)
        rows, cols = np.nonzero(dist <= threshold)
        for i, j in zip(rows + start, cols, strict=True):
            if i != j:
                key = (int(min(i, j)), int(max(i, j)))
                d = int(dist[i - start, j])
                # the relation is not exactly symmetric under variants; keep the smaller
                if best.get(key, 1 << 30) > d:
                    best[key] = d
    return [(i, j, d) for (i, j), d in sorted(best.items())]


def hash_candidates(
    dihedral: np.ndarray, crops: np.ndarray, threshold: int, num_workers: int = 1
) -> list[Pair]:
    """Pairs of images whose own or crop hash is within ``threshold`` of a dihedral variant of
    the other; the closest match per pair.

    Args:
        dihedral: (n, 8, words) uint64.
        crops: (n, num_crops, words) uint64.
    """
    n = dihedral.shape[0]
    if n < 2:
        return []
    queries = np.concatenate([dihedral[:, :1], crops], axis=1)  # (n, 1 + crops, words)
    per_query = queries.shape[1]
    if dihedral.shape[-1] == 1:
        found = hamming.radius_search(
            queries.reshape(-1), dihedral.reshape(-1), threshold, num_workers=num_workers
        )
        q_img = found.query // per_query
        db_img, db_var = found.db // NUM_VARIANTS, found.db % NUM_VARIANTS
        dist = found.distance.astype(np.int64)
    else:  # hashes longer than 64 bits: chunked brute force
        q_img_l, db_l, dist_l = [], [], []
        flat_q = queries.reshape(n * per_query, -1)
        flat_db = dihedral.reshape(n * NUM_VARIANTS, -1)
        for a in range(0, len(flat_q), 128):
            d = np.bitwise_count(flat_q[a : a + 128, None, :] ^ flat_db[None]).sum(-1)
            qi, di = np.nonzero(d <= threshold)
            q_img_l.append((qi + a) // per_query)
            db_l.append(di)
            dist_l.append(d[qi, di])
        q_img = np.concatenate(q_img_l)
        db_all = np.concatenate(db_l)
        db_img, db_var = db_all // NUM_VARIANTS, db_all % NUM_VARIANTS
        dist = np.concatenate(dist_l).astype(np.int64)
    keep = q_img != db_img
    q_img, db_img, db_var, dist = q_img[keep], db_img[keep], db_var[keep], dist[keep]
    # Closest match per unordered pair: sort by (pair, distance) and take the first of each.
    lo, hi = np.minimum(q_img, db_img), np.maximum(q_img, db_img)
    order = np.lexsort((dist, hi, lo))
    lo, hi = lo[order], hi[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = (lo[1:] != lo[:-1]) | (hi[1:] != hi[:-1])
    pick = order[first]
    return [Pair(int(q_img[k]), int(db_img[k]), int(dist[k]), int(db_var[k]), "hash") for k in pick]


def confirm_pairs(
    candidates: Sequence[Pair],
    paths: Sequence[Path],
    options: DedupOptions,
    cache: dict[tuple[str, str, int], bool] | None = None,
    keys: Sequence[str] | None = None,
) -> tuple[list[Pair], list[dict[str, Any]]]:
    """Keep the candidates within ``sure_distance``; verify the rest with ORB (if enabled).

    Returns (confirmed pairs, new verification records for a cache keyed by ``keys``).
    """
    confirmed: list[Pair] = []
    new_records: list[dict[str, Any]] = []
    for p in candidates:
        if p.distance <= options.sure_distance:
            confirmed.append(p)
            continue
        if not options.verify:
            confirmed.append(p)
            continue
        cache_key = (keys[p.i], keys[p.j], p.variant) if keys is not None else None
        if cache is not None and cache_key in cache:
            ok = cache[cache_key]
        else:
            result = verifier.verify_files(
                paths[p.i], paths[p.j], p.variant, options.verify_options
            )
            ok = result.ok
            log.debug("verify %s ~ %s (d=%d): %s", paths[p.i], paths[p.j], p.distance, result)
            if cache_key is not None:
                new_records.append(
                    {"a": cache_key[0], "b": cache_key[1], "variant": p.variant, "ok": ok}
                )
        if ok:
            confirmed.append(Pair(p.i, p.j, p.distance, p.variant, "verified"))
    return confirmed, new_records


def feature_pairs(
    feats: Sequence[features.LocalFeatures],
    hashes: Sequence[hashing.ImageHashes],
    paths: Sequence[Path],
    confirmed: Sequence[Pair],
    options: DedupOptions,
    cache: dict[tuple[str, str, int], bool] | None = None,
    keys: Sequence[str] | None = None,
    steps: StepProgress | None = None,
) -> tuple[list[Pair], list[dict[str, Any]]]:
    """Pairs the local features find and verify, beyond the ``confirmed`` ones.

    Candidates are taken best-voted first, in blocks (verified in ``options.num_workers``
    processes); one whose images are already in one group (by the confirmed pairs or an
    earlier block) needs no verification. Returns (new pairs, new verification records for a
    cache keyed by ``keys``; ``variant`` 8-10: the view of the features, see
    :attr:`FeatureCandidate.view`). ``steps(step, done, total)`` follows the search
    (``"search"``: images looked up) and the verification (``"verify"``: candidate pairs,
    block by block).
    """
    if not options.local_features or len(feats) < 2:
        return [], []
    groups = UnionFind(len(feats), rank=[f.source_side for f in feats])
    for p in confirmed:
        groups.union(p.i, p.j)
    workers = options.num_workers or os.cpu_count() or 1
    search_progress = functools.partial(steps, "search") if steps else None
    found = dedup_features.candidates(
        feats, options.index_options, threads=workers, progress=search_progress
    )
    progress = functools.partial(steps, "verify") if steps else None
    pixels = dedup_features.pixel_loader(paths)
    pairs: list[Pair] = []
    new_records: list[dict[str, Any]] = []
    with ExitStack() as stack:
        pool = None
        if workers > 1 and len(found) >= 256:
            pool = stack.enter_context(dedup_features.verify_pool(feats, paths, workers))
        for start in range(0, len(found), VERIFY_BLOCK):
            if progress:
                progress(start, len(found))
            block = [
                c
                for c in found[start : start + VERIFY_BLOCK]
                if groups.find(c.a) != groups.find(c.b)
            ]
            outcome: dict[int, bool] = {}
            todo = []
            for k, c in enumerate(block):
                cache_key = (keys[c.a], keys[c.b], c.view) if keys else None
                if cache is not None and cache_key in cache:
                    outcome[k] = cache[cache_key]
                else:
                    todo.append(k)
            results = dedup_features.verify_many([block[k] for k in todo], feats, paths, pool)
            for k, result in zip(todo, results, strict=True):
                c = block[k]
                outcome[k] = result.ok
                log.debug(
                    "features %s ~ %s (%d votes): %s", paths[c.a], paths[c.b], c.votes, result
                )
                if keys is not None:
                    new_records.append(
                        {
                            "a": keys[c.a],
                            "b": keys[c.b],
                            "variant": c.view,
                            "ok": result.ok,
                        }
                    )
            for k, c in enumerate(block):
                if not outcome[k] or groups.find(c.a) == groups.find(c.b):
                    continue
                if not groups_agree(groups, c, feats, pixels):
                    log.debug("features %s ~ %s: their groups disagree", paths[c.a], paths[c.b])
                    continue
                groups.union(c.a, c.b)
                distance = pair_distance(hashes[c.a], hashes[c.b])
                pairs.append(Pair(c.a, c.b, distance, 4 * int(c.mirrored), "features"))
    if progress:
        progress(len(found), len(found))
    return pairs, new_records


def groups_agree(
    groups: UnionFind,
    c: dedup_features.FeatureCandidate,
    feats: Sequence[features.LocalFeatures],
    pixels: Callable[[int], np.ndarray],
) -> bool:
    """May the verified pair ``c`` join its two groups? Yes when either is a single image.
    Two groups of several are joined only if their most detailed members (the largest
    stored pictures) verify too, either way round, mirrored or not: a degraded copy (small, blurred,
    cropped) of one photo of a statue can pass as a copy of another photo of it taken from
    the same spot, which the detailed pictures tell apart; a true copy joins groups that
    hold the same photo."""
    ra, rb = groups.find(c.a), groups.find(c.b)
    if groups.size(ra) < 2 or groups.size(rb) < 2:
        return True
    a, b = groups.best(ra), groups.best(rb)
    if {a, b} == {c.a, c.b} and not c.coarse:
        return True  # the pair itself, verified in full
    return dedup_features.verify_either_way(a, b, feats, pixels, c.mirrored)


def pair_distance(a: hashing.ImageHashes, b: hashing.ImageHashes) -> int:
    """Smallest distance between one image's own/crop hashes and the other's variants."""
    best = 1 << 30
    for x, y in ((a, b), (b, a)):
        q = np.concatenate([x.dihedral[:1], x.crops])
        d = np.bitwise_count(q[:, None, :] ^ y.dihedral[None]).sum(-1)
        best = min(best, int(d.min()))
    return best


class UnionFind:
    """Disjoint sets over 0..n-1 (path halving), with each set's size and its member of the
    highest ``rank`` (the first one on ties; ranks all 0 unless given)."""

    def __init__(self, n: int, rank: Sequence[int] | None = None) -> None:
        self.parent = list(range(n))
        self._size = [1] * n
        self._rank = list(rank) if rank is not None else [0] * n
        self._best = list(range(n))

    def find(self, x: int) -> int:
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def size(self, root: int) -> int:
        return self._size[root]

    def best(self, root: int) -> int:
        """The set's member of the highest rank."""
        return self._best[root]

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            root, child = min(ra, rb), max(ra, rb)
            self.parent[child] = root
            self._size[root] += self._size[child]
            self._best[root] = min(self._best[root], self._best[child], key=self._order)

    def _order(self, i: int) -> tuple[int, int]:
        return -self._rank[i], i
