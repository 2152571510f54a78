"""Bring files into the append-only ``raw/`` store with a provenance record each.

Both sources land here: a web crawl (see :mod:`landmarks.crawl`) and a local folder tree
``DIR/<class>/<file>`` imported as if it had been crawled. ``raw/`` is append-only: a file
is never renamed, moved, overwritten or deleted once it is there.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from landmarks import recovery
from landmarks.manifest import fault_point
from landmarks.storage import Layout, append_jsonl, read_jsonl, sha256_file

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
_UNSAFE = re.compile(r"[^A-Za-z0-9._\-]+")


@dataclass(frozen=True)
class IngestResult:
    added: int
    skipped_known: int
    per_class: dict[str, int] = field(default_factory=dict)
    refresh_id: str = ""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def new_refresh_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")


class RawStore:
    """The raw store: knows which (class, sha256) pairs and URLs it already holds."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        recovery.adopt_raw_orphans(layout)  # files a crash left between rename and record
        self.records = read_jsonl(layout.raw_manifest)
        self.known = {(r["class"], r["sha256"]) for r in self.records}
        self.known_urls = {r["url"] for r in self.records if r.get("url")}

    def has(self, class_name: str, sha256: str) -> bool:
        return (class_name, sha256) in self.known

    def add_file(
        self, src: Path, class_name: str, provenance: dict[str, Any], name: str | None = None
    ) -> dict | None:
        """Copy ``src`` into ``raw/<class>/`` atomically and record it. None if already known."""
        digest = sha256_file(src)
        if self.has(class_name, digest):
            return None
        dest = self._free_name(class_name, name or src.name)
        tmp = dest.with_name(f".{dest.name}.part")
        shutil.copyfile(src, tmp)
        return self._commit(tmp, dest, class_name, digest, provenance)

    def adopt_file(
        self,
        src: Path,
        class_name: str,
        provenance: dict[str, Any],
        name: str,
        digest: str | None = None,
    ) -> dict | None:
        """Move a verified staging file (same filesystem) into ``raw/<class>/`` with one rename,
        and record it. The crawl's downloads take this path: no copy, and a reader never sees a
        partial file in raw/. None (and ``src`` removed) if the class already holds its bytes.
        """
        digest = digest or sha256_file(src)
        if self.has(class_name, digest):
            Path(src).unlink(missing_ok=True)
            return None
        dest = self._free_name(class_name, name)
        return self._commit(src, dest, class_name, digest, provenance)

    def _commit(
        self, src: Path, dest: Path, class_name: str, digest: str, provenance: dict[str, Any]
    ) -> dict:
        """Intent, rename, record: a crash anywhere leaves a state the next open recovers
        without loss or a second download (see :mod:`landmarks.recovery`)."""
        intent = recovery.write_intent(self.layout, dest, class_name, digest, provenance)
        os.replace(src, dest)
        fault_point("crawl", "renamed")
        record = self._record(dest, class_name, digest, provenance)
        intent.unlink(missing_ok=True)
        return record

    def _record(self, dest: Path, class_name: str, digest: str, provenance: dict[str, Any]) -> dict:
        """Append the provenance record of a file now in raw/ and remember it."""
        record = {
            **provenance,
            "class": class_name,
            "path": dest.relative_to(self.layout.raw_dir).as_posix(),
            "sha256": digest,
            "bytes": dest.stat().st_size,
            "added_at": now_iso(),
        }
        append_jsonl(self.layout.raw_manifest, [record])
        self.records.append(record)
        self.known.add((class_name, digest))
        if record.get("url"):
            self.known_urls.add(record["url"])
        return record

    def _free_name(self, class_name: str, name: str) -> Path:
        folder = self.layout.raw_dir / class_name
        folder.mkdir(parents=True, exist_ok=True)
        stem, suffix = os.path.splitext(_UNSAFE.sub("_", name) or "image")
        candidate = folder / f"{stem}{suffix}"
        n = 1
        while candidate.exists():
            candidate = folder / f"{stem}-{n}{suffix}"
            n += 1
        return candidate


def list_class_folders(source_dir: Path) -> dict[str, list[Path]]:
    """Map class name -> files for a ``DIR/<class>/<file>`` tree (hidden entries skipped)."""
    source_dir = Path(source_dir)
    if not source_dir.is_dir():
        raise FileNotFoundError(f"source folder not found: {source_dir}")
    classes: dict[str, list[Path]] = {}
    for class_dir in sorted(p for p in source_dir.iterdir() if p.is_dir()):
        if class_dir.name.startswith("."):
            continue
        files = sorted(
            p for p in class_dir.rglob("*") if p.is_file() and not p.name.startswith(".")
        )
        if files:
            classes[class_dir.name] = files
    if not classes:
        raise ValueError(
            f"{source_dir} holds no class folders with files; expected DIR/<class>/<image files>"
        )
    return classes


def import_folder(
    source_dir: Path,
    layout: Layout,
    classes: list[str] | None = None,
    progress: Progress | None = None,
) -> IngestResult:
    """Import ``source_dir/<class>/*`` into raw/, skipping files already held for that class."""
    tree = list_class_folders(source_dir)
    if classes is not None:
        missing = sorted(set(classes) - set(tree))
        if missing:
            log.warning("classes with no folder in %s: %s", source_dir, ", ".join(missing))
        tree = {k: v for k, v in tree.items() if k in set(classes)}
    store = RawStore(layout)
    refresh_id = new_refresh_id()
    total = sum(len(v) for v in tree.values())
    added = skipped = done = 0
    per_class: dict[str, int] = {}
    for class_name, files in tree.items():
        per_class[class_name] = 0
        for path in files:
            record = store.add_file(
                path,
                class_name,
                {
                    "source": "folder",
                    "original": str(path.resolve()),
                    "refresh": refresh_id,
                    "fetched_at": now_iso(),
                },
            )
            if record is None:
                skipped += 1
            else:
                added += 1
                per_class[class_name] += 1
            done += 1
            if progress:
                progress(done, total)
    log.info("imported %d new files from %s (%d already known)", added, source_dir, skipped)
    return IngestResult(
        added=added, skipped_known=skipped, per_class=per_class, refresh_id=refresh_id
    )
