"""The dedup stage over pipeline storage: options, caches, and the run that writes the report."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from landmarks.dedup import candidates as dedup_features
from landmarks.dedup import feature_index, features, hashing
from landmarks.dedup import verify as verifier
from landmarks.dedup.groups import find_groups
from landmarks.dedup.pairs import (
    Pair,
    StepProgress,
    confirm_pairs,
    feature_pairs,
    hash_candidates,
    hex_to_words,
)
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
HASH_VERSION = 3  # bump when the hash computation changes, so cached hashes are redone


@dataclass(frozen=True)
class DedupOptions:
    hash_size: int = 8
    threshold: int = 8
    sure_distance: int = 4
    verify: bool = True
    crop_fractions: tuple[float, ...] = hashing.DEFAULT_CROPS
    square_crop: bool = True
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
            "square_crop": self.square_crop,
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
        "square": options.square_crop,
        "version": HASH_VERSION,
    }


def _hash_one(args: tuple[Path, int, tuple[float, ...], bool]) -> hashing.ImageHashes:
    return hashing.hash_path(*args)


def hash_files(
    paths: Sequence[Path],
    options: DedupOptions,
    progress: Progress | None = None,
    on_hashed: Callable[[int, hashing.ImageHashes], None] | None = None,
) -> list[hashing.ImageHashes]:
    """Hash files (reduced decode), in ``options.num_workers`` processes (0: one per CPU)."""
    jobs = [
        (Path(p), options.hash_size, options.crop_fractions, options.square_crop) for p in paths
    ]
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
    steps: StepProgress | None = None,
) -> DedupResult:
    """Find duplicate groups among ``clean_records`` and write the report and kept list.
    ``progress`` follows the images hashed and described, ``steps`` the local features'
    search and verification (:func:`feature_pairs`).

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
            steps,
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
    from landmarks.dedup import report as dedup_report

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
