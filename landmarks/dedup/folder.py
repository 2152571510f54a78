"""``landmarks dedup DIR``: the dedup of any folder tree, without pipeline storage."""

from __future__ import annotations

import logging
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from landmarks import images
from landmarks.dedup import features, hashing
from landmarks.dedup.stage import (
    DedupOptions,
    Progress,
    StepProgress,
    _candidates,
    confirm_pairs,
    feature_pairs,
    find_groups,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FolderResult:
    root: Path
    num_files: int
    num_images: int
    groups: list[dict[str, Any]]  # {"keeper": rel, "duplicates": [{"path", "distance", "match"}]}
    quarantined: list[dict[str, str]]  # {"path": rel, "reason": code, "detail": text}

    @property
    def num_duplicates(self) -> int:
        return sum(len(g["duplicates"]) for g in self.groups)

    def to_json(self) -> dict[str, Any]:
        """The documented output: paths relative to the folder."""
        return {
            "groups": [
                {"keeper": g["keeper"], "duplicates": [d["path"] for d in g["duplicates"]]}
                for g in self.groups
            ],
            "quarantined": [{"path": q["path"], "reason": q["reason"]} for q in self.quarantined],
            "details": {
                "groups": self.groups,
                "quarantined": self.quarantined,
                "num_files": self.num_files,
                "num_images": self.num_images,
            },
        }


ScanResult = tuple[dict[str, Any], hashing.ImageHashes | None, features.LocalFeatures | None]


def _scan_one(
    args: tuple[Path, images.ImageLimits, int, tuple[float, ...], bool, int],
) -> ScanResult:
    path, limits, hash_size, crops, square, num_features = args
    try:
        norm = images.load_normalized(path, limits)
    except images.ImageRejected as exc:
        return {"reason": exc.reason, "detail": exc.detail}, None, None
    except OSError as exc:  # unreadable on disk (permissions, a vanished file)
        return {"reason": images.UNREADABLE, "detail": str(exc)}, None, None
    im = norm.image
    info = {
        "pixel_hash": images.pixel_hash(im),
        "source_width": im.size[0],
        "source_height": im.size[1],
        "raw_bytes": path.stat().st_size,
        "animated": norm.animated,
    }
    grey = norm.grey  # made once, for the checks, the hashes and the features
    feats = features.extract_image(grey, num_features) if num_features else None
    return info, hashing.hash_image(grey, hash_size, crops, square), feats


def list_files(root: Path) -> list[Path]:
    """Every regular file under ``root``, hidden ones skipped, in a stable order."""
    return sorted(
        p
        for p in Path(root).rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def dedup_folder(
    root: Path,
    options: DedupOptions,
    limits: images.ImageLimits,
    progress: Progress | None = None,
    steps: StepProgress | None = None,
) -> FolderResult:
    """Dedup any folder tree in place of a pipeline run: decode and check every file (the
    clean stage's rules), then group exact and near duplicates. Nothing is written or moved.
    ``progress`` follows the files scanned, ``steps`` the local features' search and
    verification (:func:`~landmarks.dedup.pairs.feature_pairs`).

    Files in different top-level folders are taken as different labels: a group across them
    is flagged ``label_conflict``.
    """
    root = Path(root)
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a folder")
    files = list_files(root)
    num_features = options.num_features if options.local_features else 0
    jobs = [
        (p, limits, options.hash_size, options.crop_fractions, options.square_crop, num_features)
        for p in files
    ]
    workers = options.num_workers or os.cpu_count() or 1
    if workers > 1 and len(jobs) >= 64:
        with ProcessPoolExecutor(workers) as pool:
            scanned = []
            for i, item in enumerate(pool.map(_scan_one, jobs, chunksize=16)):
                scanned.append(item)
                if progress:
                    progress(i + 1, len(jobs))
    else:
        scanned = []
        for i, job in enumerate(jobs):
            scanned.append(_scan_one(job))
            if progress:
                progress(i + 1, len(jobs))
    records: list[dict[str, Any]] = []
    hashes: list[hashing.ImageHashes] = []
    feats: list[features.LocalFeatures] = []
    paths: list[Path] = []
    quarantined: list[dict[str, str]] = []
    for path, (info, h, f) in zip(files, scanned, strict=True):
        rel = path.relative_to(root).as_posix()
        if h is None:
            quarantined.append({"path": rel, **info})
            continue
        parts = path.relative_to(root).parts
        records.append({**info, "path": rel, "class": parts[0] if len(parts) > 1 else ""})
        hashes.append(h)
        if f is not None:
            feats.append(f)
        paths.append(path)
    candidates = _candidates(hashes, options)
    pairs, _ = confirm_pairs(candidates, paths, options)
    more, _ = feature_pairs(feats, hashes, paths, pairs, options, steps=steps)
    found, _ = find_groups(records, hashes, pairs + more)
    groups = []
    for g in sorted(found, key=lambda g: records[g["keeper"]]["path"]):
        groups.append(
            {
                "keeper": records[g["keeper"]]["path"],
                "duplicates": [
                    {"path": records[k]["path"], "distance": d, "match": how}
                    for k, d, how in sorted(g["members"], key=lambda m: records[m[0]]["path"])
                ],
                "label_conflict": len(g["classes"]) > 1,
            }
        )
    log.info(
        "dedup %s: %d files, %d quarantined, %d duplicates in %d groups",
        root,
        len(files),
        len(quarantined),
        sum(len(g["duplicates"]) for g in groups),
        len(groups),
    )
    return FolderResult(
        root=root,
        num_files=len(files),
        num_images=len(records),
        groups=groups,
        quarantined=quarantined,
    )
