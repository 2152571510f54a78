"""Clean stage: decode every raw file, normalise it to an upright RGB JPEG or quarantine it.

Incremental: a raw file already cleaned or quarantined under the same settings is skipped.
Raw files are never touched; a refused file is *copied* to ``quarantine/<reason>/``.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from landmarks import images
from landmarks.manifest import fault_point
from landmarks.storage import (
    Layout,
    append_jsonl,
    atomic_write_bytes,
    read_jsonl,
    sha256_bytes,
)

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class CleanOptions:
    min_side: int = 64
    max_pixels: int = 50_000_000
    max_aspect_ratio: float = 5.0
    min_std: float = 4.0
    min_entropy: float = 3.5
    max_side: int = 512
    jpeg_quality: int = 95

    def digest(self) -> str:
        return sha256_bytes(json.dumps(asdict(self), sort_keys=True).encode())[:12]

    def limits(self) -> images.ImageLimits:
        return images.ImageLimits(
            min_side=self.min_side,
            max_pixels=self.max_pixels,
            max_aspect_ratio=self.max_aspect_ratio,
            min_std=self.min_std,
            min_entropy=self.min_entropy,
        )


@dataclass(frozen=True)
class CleanResult:
    cleaned: int
    quarantined: int
    skipped: int
    total_clean: int
    total_quarantined: int
    reasons: dict[str, int]
    manifest_path: Path


def current_records(path: Path, config: str) -> list[dict[str, Any]]:
    """Manifest records written under settings ``config`` (latest per raw file)."""
    latest: dict[str, dict[str, Any]] = {}
    for record in read_jsonl(path):
        if record.get("config") == config:
            latest[record["raw_path"]] = record
    return list(latest.values())


def clean_one(raw_path: Path, class_name: str, layout: Layout, options: CleanOptions) -> dict:
    """Normalise one raw file; returns its clean record or raises ImageRejected."""
    normalized = images.load_normalized(raw_path, options.limits())
    pixels = images.pixel_hash(normalized.image)
    out = images.fit_within(normalized.image, options.max_side)
    data = images.encode_jpeg(out, options.jpeg_quality)
    rel = Path(class_name) / f"{pixels[:20]}.jpg"
    atomic_write_bytes(layout.clean_dir / rel, data)
    return {
        "path": rel.as_posix(),
        "class": class_name,
        "sha256": sha256_bytes(data),
        "pixel_hash": pixels,
        "width": out.size[0],
        "height": out.size[1],
        "source_width": normalized.image.size[0],
        "source_height": normalized.image.size[1],
        "source_format": normalized.source_format,
        "source_mode": normalized.source_mode,
        "animated": normalized.animated,
    }


def quarantine_one(raw_path: Path, class_name: str, reason: str, layout: Layout) -> str:
    dest = layout.quarantine_dir / reason / class_name / raw_path.name
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.part")
        shutil.copyfile(raw_path, tmp)
        tmp.replace(dest)
    return dest.relative_to(layout.quarantine_dir).as_posix()


def clean_raw(
    layout: Layout,
    options: CleanOptions,
    progress: Progress | None = None,
) -> CleanResult:
    """Clean every raw file not yet cleaned or quarantined under ``options``."""
    config = options.digest()
    raw_records = read_jsonl(layout.raw_manifest)
    current = current_records(layout.clean_manifest, config)
    gone = [r["path"] for r in current if not (layout.clean_dir / r["path"]).is_file()]
    if gone:  # deleted by hand since the last run: make them again from their raw photos
        log.warning("%d clean images are gone, cleaning them again: %s", len(gone), gone[:5])
    done = {r["raw_path"] for r in current if r["path"] not in set(gone)}
    done |= {r["raw_path"] for r in current_records(layout.quarantine_manifest, config)}
    todo = [r for r in raw_records if r["path"] not in done]
    reasons: dict[str, int] = {}
    cleaned = quarantined = 0
    gone_raw: list[str] = []
    for i, raw in enumerate(todo, start=1):
        raw_path = layout.raw_dir / raw["path"]
        if not raw_path.is_file():  # deleted by hand: say so, clean the others
            gone_raw.append(raw["path"])
            continue
        base = {
            "raw_path": raw["path"],
            "raw_sha256": raw["sha256"],
            "raw_bytes": raw.get("bytes", 0),
            "config": config,
        }
        try:
            record = clean_one(raw_path, raw["class"], layout, options)
        except images.ImageRejected as exc:
            where = quarantine_one(raw_path, raw["class"], exc.reason, layout)
            append_jsonl(
                layout.quarantine_manifest,
                [
                    {
                        **base,
                        "class": raw["class"],
                        "reason": exc.reason,
                        "detail": exc.detail,
                        "path": where,
                    }
                ],
            )
            reasons[exc.reason] = reasons.get(exc.reason, 0) + 1
            quarantined += 1
            log.info("quarantined %s: %s", raw["path"], exc)
        else:
            fault_point("clean", "written")
            append_jsonl(layout.clean_manifest, [{**base, **record}])
            cleaned += 1
        if progress:
            progress(i, len(todo))
    if gone_raw:
        log.warning(
            "%d raw photos in raw/manifest.jsonl are gone (deleted by hand?) and were not "
            "cleaned: %s; restore them, `landmarks verify` lists them",
            len(gone_raw),
            gone_raw[:5],
        )
    total_clean = len(current_records(layout.clean_manifest, config))
    total_quarantined = len(current_records(layout.quarantine_manifest, config))
    log.info("clean: %d cleaned, %d quarantined, %d already done", cleaned, quarantined, len(done))
    return CleanResult(
        cleaned=cleaned,
        quarantined=quarantined,
        skipped=len(raw_records) - len(todo),
        total_clean=total_clean,
        total_quarantined=total_quarantined,
        reasons=reasons,
        manifest_path=layout.clean_manifest,
    )
