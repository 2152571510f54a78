"""Dedup stage: exact and near-duplicate groups, one keeper each, and label conflicts.

Exact duplicates share a hash of their decoded pixels. Near duplicates are found in three
steps:

1. hashes (:mod:`landmarks.hashing`): imagehash's pHash of every image, of its 8 dihedral
   variants (flips and 90-degree rotations) and of its centre crop(s), computed from one
   reduced decode and one DCT;
2. search (:mod:`landmarks.hamming`): every image's own hash and crop hashes are looked up
   among all images' dihedral hashes within ``threshold`` bits, with multi-index hashing;
3. verification (:mod:`landmarks.verify`): a pair farther apart than ``sure_distance`` is
   kept only if ORB keypoints agree on a similarity transform and the aligned pixels
   correlate, which separates a copy from a second photo taken from the same spot;
4. local features (:mod:`landmarks.dedup_features`), for what no global hash sees (crops
   anywhere, small rotations, overlays, and chains of these): ORB descriptors of every image
   and its mirror vote, through an inverted index, for the images they share features with,
   and the best-voted pairs not already grouped are verified as in 3 (any rotation).

Groups are the connected components of the confirmed pairs. A group whose members carry
different labels is a label conflict: every member is dropped and reported.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import imagehash
import numpy as np
from PIL import Image

from landmarks import dedup_features, feature_index, features, hamming, hashing
from landmarks import verify as verifier
from landmarks.manifest import fault_point
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
J = TypeVar("J")
R = TypeVar("R")
NUM_VARIANTS = hashing.NUM_DIHEDRAL
HASH_VERSION = 2  # bump when the hash computation changes, so cached hashes are redone


@dataclass(frozen=True)
class DedupOptions:
    hash_size: int = 8
    threshold: int = 8
    sure_distance: int = 4
    verify: bool = True
    crop_fractions: tuple[float, ...] = hashing.DEFAULT_CROPS
    num_workers: int = 1
    verify_options: verifier.VerifyOptions = field(default_factory=verifier.VerifyOptions)
    local_features: bool = True
    num_features: int = features.NUM_FEATURES
    index_options: feature_index.IndexOptions = field(default_factory=feature_index.IndexOptions)

    def key(self) -> dict[str, Any]:
        """What the result depends on (not how many processes computed it)."""
        route = {}
        if self.local_features:
            route = {
                "features": [self.num_features, features.FEATURE_VERSION],
                "index_options": sorted(vars(self.index_options).items()),
                "feature_verify": dedup_features.verify_settings(),
            }
        return {
            **route,
            "hash_size": self.hash_size,
            "threshold": self.threshold,
            "sure_distance": self.sure_distance,
            "verify": self.verify,
            "crop_fractions": list(self.crop_fractions),
            "verify_options": sorted(vars(self.verify_options).items()),
            "hash_version": HASH_VERSION,
        }


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
    html_path: Path | None = None


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
    return hashing.hash_grey(grey, hash_size, ()).hex()


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
) -> tuple[list[Pair], list[dict[str, Any]]]:
    """Pairs the local features find and verify, beyond the ``confirmed`` ones.

    Candidates are taken best-voted first, in blocks (verified in ``options.num_workers``
    processes); one whose images are already in one group (by the confirmed pairs or an
    earlier block) needs no verification. Returns (new pairs, new verification records for a
    cache keyed by ``keys``; ``variant`` 8 or 9: features, as is or mirrored).
    """
    if not options.local_features or len(feats) < 2:
        return [], []
    groups = UnionFind(len(feats))
    for p in confirmed:
        groups.union(p.i, p.j)
    found = dedup_features.candidates(feats, options.index_options)
    workers = options.num_workers or os.cpu_count() or 1
    pool = ProcessPoolExecutor(workers) if workers > 1 and len(found) >= 256 else None
    pairs: list[Pair] = []
    new_records: list[dict[str, Any]] = []
    try:
        for start in range(0, len(found), 512):
            block = [c for c in found[start : start + 512] if groups.find(c.a) != groups.find(c.b)]
            outcome: dict[int, bool] = {}
            todo = []
            for k, c in enumerate(block):
                cache_key = (keys[c.a], keys[c.b], 8 + int(c.mirrored)) if keys else None
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
                            "variant": 8 + int(c.mirrored),
                            "ok": result.ok,
                        }
                    )
            for k, c in enumerate(block):
                if outcome[k] and groups.find(c.a) != groups.find(c.b):
                    groups.union(c.a, c.b)
                    distance = pair_distance(hashes[c.a], hashes[c.b])
                    pairs.append(Pair(c.a, c.b, distance, 4 * int(c.mirrored), "features"))
    finally:
        if pool is not None:
            pool.shutdown()
    return pairs, new_records


def pair_distance(a: hashing.ImageHashes, b: hashing.ImageHashes) -> int:
    """Smallest distance between one image's own/crop hashes and the other's variants."""
    best = 1 << 30
    for x, y in ((a, b), (b, a)):
        q = np.concatenate([x.dihedral[:1], x.crops])
        d = np.bitwise_count(q[:, None, :] ^ y.dihedral[None]).sum(-1)
        best = min(best, int(d.min()))
    return best


class UnionFind:
    """Disjoint sets over 0..n-1 (path halving)."""

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


def _hash_row(h: hashing.ImageHashes) -> dict[str, list[str]]:
    return {
        "dihedral": [hashing.words_to_hex(w) for w in h.dihedral],
        "crops": [hashing.words_to_hex(w) for w in h.crops],
    }


def _hashes_from_row(row: dict[str, Any]) -> hashing.ImageHashes:
    return hashing.ImageHashes(
        dihedral=hex_to_words(row["dihedral"]), crops=hex_to_words(row["crops"])
    )


def _hash_settings(options: DedupOptions) -> dict[str, Any]:
    return {
        "hash_size": options.hash_size,
        "crops": list(options.crop_fractions),
        "version": HASH_VERSION,
    }


def _hash_one(args: tuple[Path, int, tuple[float, ...]]) -> hashing.ImageHashes:
    path, hash_size, crops = args
    return hashing.hash_path(path, hash_size, crops)


def hash_files(
    paths: Sequence[Path],
    options: DedupOptions,
    progress: Progress | None = None,
    on_hashed: Callable[[int, hashing.ImageHashes], None] | None = None,
) -> list[hashing.ImageHashes]:
    """Hash files (reduced decode), in ``options.num_workers`` processes (0: one per CPU)."""
    jobs = [(Path(p), options.hash_size, options.crop_fractions) for p in paths]
    return _pool_map(_hash_one, jobs, options.num_workers, progress, on_hashed)


def _features_one(args: tuple[Path, int]) -> features.LocalFeatures:
    return features.extract_path(*args)


def feature_files(
    paths: Sequence[Path],
    options: DedupOptions,
    progress: Progress | None = None,
    on_done: Callable[[int, features.LocalFeatures], None] | None = None,
) -> list[features.LocalFeatures]:
    """ORB features of files (reduced decode), in ``options.num_workers`` processes."""
    jobs = [(Path(p), options.num_features) for p in paths]
    return _pool_map(_features_one, jobs, options.num_workers, progress, on_done)


def _pool_map(
    fn: Callable[[J], R],
    jobs: Sequence[J],
    num_workers: int,
    progress: Progress | None,
    on_item: Callable[[int, R], None] | None,
) -> list[R]:
    workers = num_workers or os.cpu_count() or 1
    out: list[R] = []
    if workers <= 1 or len(jobs) < 64:
        results: Iterable[R] = map(fn, jobs)
        pool = None
    else:
        pool = ProcessPoolExecutor(workers)
        results = pool.map(fn, jobs, chunksize=32)
    try:
        for i, item in enumerate(results):
            out.append(item)
            if on_item:
                on_item(i, item)
            if progress:
                progress(i + 1, len(jobs))
    finally:
        if pool is not None:
            pool.shutdown()
    return out


def dedup_clean(
    layout: Layout,
    clean_records: list[dict[str, Any]],
    options: DedupOptions,
    progress: Progress | None = None,
) -> DedupResult:
    """Find duplicate groups among ``clean_records`` and write the report and kept list.

    Hashes are cached per clean file (``dedup/hashes.jsonl``) and verification outcomes per
    pair (``dedup/verified.jsonl``); an unchanged input with unchanged options reuses the
    previous report without any work.
    """
    records = sorted(clean_records, key=lambda r: r["path"] + "|" + r["raw_path"])
    input_digest = digest_records(
        [{"p": r["path"], "s": r["sha256"], "c": r["class"], "r": r["raw_path"]} for r in records]
        + [{"options": options.key()}]
    )
    kept_path = layout.dedup_dir / "kept.jsonl"
    html_path = layout.dedup_dir / "report.html"
    if layout.dedup_report.exists() and kept_path.exists():
        previous = read_json(layout.dedup_report)
        if previous.get("input_digest") == input_digest:
            log.info("dedup: input unchanged, reusing %s", layout.dedup_report)
            return _result_from_report(previous, layout, kept_path, html_path, reused=True)

    settings = _hash_settings(options)
    cache_path = layout.dedup_dir / "hashes.jsonl"
    cache = {
        r["sha256"]: _hashes_from_row(r)
        for r in read_jsonl(cache_path)
        if r.get("settings") == settings
    }
    todo = sorted(
        {r["sha256"]: r for r in records if r["sha256"] not in cache}.values(),
        key=lambda r: r["path"],
    )
    pending: list[dict[str, Any]] = []

    def remember(i: int, h: hashing.ImageHashes) -> None:
        cache[todo[i]["sha256"]] = h
        pending.append({"sha256": todo[i]["sha256"], "settings": settings, **_hash_row(h)})
        if len(pending) >= 200:  # a crash loses at most this many hashes
            append_jsonl(cache_path, pending)
            pending.clear()

    hash_files([layout.clean_dir / r["path"] for r in todo], options, progress, remember)
    append_jsonl(cache_path, pending)
    if progress and not todo:
        progress(len(records), len(records))
    hashes = [cache[r["sha256"]] for r in records]

    candidates = _candidates(hashes, options)
    verified_path = layout.dedup_dir / "verified.jsonl"
    vkey = digest_records([{"v": sorted(vars(options.verify_options).items())}])[:12]
    verified = _read_checks(verified_path, vkey)
    pairs, new_checks = confirm_pairs(
        candidates,
        [layout.clean_dir / r["path"] for r in records],
        options,
        verified,
        [r["sha256"] for r in records],
    )
    append_jsonl(verified_path, [{**c, "options": vkey} for c in new_checks])
    if options.local_features:
        feats = _cached_features(layout, records, options, progress)
        fkey = digest_records([{"f": options.key()["feature_verify"]}])[:12]
        checked = _read_checks(verified_path, fkey)
        more, new_checks = feature_pairs(
            feats,
            hashes,
            [layout.clean_dir / r["path"] for r in records],
            pairs,
            options,
            checked,
            [r["sha256"] for r in records],
        )
        append_jsonl(verified_path, [{**c, "options": fkey} for c in new_checks])
        pairs = pairs + more

    groups, kept = find_groups(records, hashes, pairs)
    report_groups = []
    conflicts = []
    for g in groups:
        keeper = records[g["keeper"]]
        entry = {
            "keeper": keeper["path"],
            "class": keeper["class"],
            "raw_path": keeper["raw_path"],
            "duplicates": [
                {
                    "path": records[k]["path"],
                    "class": records[k]["class"],
                    "raw_path": records[k]["raw_path"],
                    "distance": d,
                    "match": how,
                }
                for k, d, how in g["members"]
            ],
        }
        if len(g["classes"]) > 1:
            entry["classes"] = g["classes"]
            conflicts.append(entry)
        else:
            report_groups.append(entry)
    kept_records = [
        {**records[k], "phash": hashing.words_to_hex(hashes[k].dihedral[0])} for k in kept
    ]
    write_jsonl(kept_path, kept_records)
    fault_point("dedup", "kept-written")  # kept.jsonl new, report.json not yet
    report = {
        "input_digest": input_digest,
        "options": options.key(),
        "num_images": len(records),
        "num_kept": len(kept_records),
        "num_duplicates": sum(len(g["duplicates"]) for g in report_groups),
        "num_candidates": len(candidates),
        "num_verified": sum(1 for p in pairs if p.how == "verified"),
        "num_rejected": len(candidates) - sum(1 for p in pairs if p.how != "features"),
        "num_feature_pairs": sum(1 for p in pairs if p.how == "features"),
        "groups": report_groups,
        "label_conflicts": conflicts,
    }
    from landmarks import dedup_report

    quarantine = read_jsonl(layout.quarantine_manifest)
    dedup_report.write_html(
        html_path,
        title="Duplicates and quarantined files",
        groups=[dedup_report.group_view(g, layout.clean_dir, conflict=False) for g in report_groups]
        + [dedup_report.group_view(g, layout.clean_dir, conflict=True) for g in conflicts],
        quarantined=[
            dedup_report.QuarantineView(
                layout.quarantine_dir / q["path"], q["raw_path"], q["reason"], q.get("detail", "")
            )
            for q in {q["raw_path"]: q for q in quarantine}.values()
        ],
    )
    atomic_write_json(layout.dedup_report, report)
    log.info(
        "dedup: %d images, %d kept, %d groups, %d label conflicts, %d/%d candidates verified",
        len(records),
        len(kept_records),
        len(report_groups),
        len(conflicts),
        report["num_verified"],
        len(candidates),
    )
    return _result_from_report(report, layout, kept_path, html_path, reused=False)


def _read_checks(path: Path, key: str) -> dict[tuple[str, str, int], bool]:
    """Cached verification outcomes made under the settings digested as ``key``."""
    return {
        (r["a"], r["b"], r["variant"]): r["ok"] for r in read_jsonl(path) if r.get("options") == key
    }


def _cached_features(
    layout: Layout,
    records: Sequence[dict[str, Any]],
    options: DedupOptions,
    progress: Progress | None = None,
) -> list[features.LocalFeatures]:
    """Every record's local features, from ``dedup/features`` or computed (new images only)."""
    cache = dedup_features.FeatureCache(layout.dedup_dir / "features", options.num_features)
    found: dict[str, features.LocalFeatures] = {}
    for r in records:
        if r["sha256"] not in found:
            f = cache.get(r["sha256"])
            if f is not None:
                found[r["sha256"]] = f
    todo = sorted(
        {r["sha256"]: r for r in records if r["sha256"] not in found}.values(),
        key=lambda r: r["path"],
    )

    def remember(i: int, f: features.LocalFeatures) -> None:
        found[todo[i]["sha256"]] = f
        cache.put(todo[i]["sha256"], f)

    feature_files([layout.clean_dir / r["path"] for r in todo], options, progress, remember)
    return [found[r["sha256"]] for r in records]


def _candidates(hashes: Sequence[hashing.ImageHashes], options: DedupOptions) -> list[Pair]:
    if not hashes:
        return []
    dihedral = np.stack([h.dihedral for h in hashes])
    crops = np.stack([h.crops for h in hashes])
    return hash_candidates(dihedral, crops, options.threshold, options.num_workers)


def _result_from_report(
    report: dict[str, Any], layout: Layout, kept_path: Path, html_path: Path, reused: bool
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
        html_path=html_path if html_path.exists() else None,
    )


# The standalone command (any folder tree, no pipeline storage) lives in its own module.
from landmarks.dedup_folder import FolderResult, dedup_folder, list_files  # noqa: E402

__all__ = ["FolderResult", "dedup_folder", "list_files"]
