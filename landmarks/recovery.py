"""Lossless recovery of the raw store after a crash between a file's rename and its record.

A file enters ``raw/<class>/`` in three steps (:class:`landmarks.ingest.RawStore`):

1. an *intent* is written: ``raw/.pending/<name>.json`` holds the file's future path, sha256
   and full provenance (engine, query, URL...), synced to disk;
2. the file is renamed (or copied, then renamed) into ``raw/<class>/``;
3. its record is appended to ``raw/manifest.jsonl`` and the intent removed.

A crash after 2 and before 3 leaves an *orphan*: a file no manifest knows, which no stage
would ever see, and whose URL the next crawl would fetch again under another name.
:func:`adopt_raw_orphans` (run whenever a raw store is opened, and by ``landmarks verify
--repair``) appends the missing record: from the intent when there is one (the URL is back in
the manifest, so it is never fetched again), otherwise rebuilt from the file itself (sha256,
bytes, pixel size, format, class from its folder). Adopted records carry ``"recovered":
true``. Nothing is ever deleted but intents whose file never arrived.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from landmarks.storage import Layout, append_jsonl, atomic_write_json, read_json, read_jsonl

log = logging.getLogger(__name__)

PENDING_DIR = ".pending"


def pending_dir(layout: Layout) -> Path:
    return layout.raw_dir / PENDING_DIR


def write_intent(
    layout: Layout, dest: Path, class_name: str, digest: str, provenance: dict[str, Any]
) -> Path:
    """Record, before the rename, what ``dest`` will be; returns the intent file."""
    rel = dest.relative_to(layout.raw_dir).as_posix()
    intent = pending_dir(layout) / (hashlib.sha256(rel.encode()).hexdigest()[:24] + ".json")
    atomic_write_json(
        intent, {"path": rel, "class": class_name, "sha256": digest, "provenance": provenance}
    )
    return intent


def raw_files(layout: Layout) -> list[Path]:
    """Every photo under ``raw/<class>/`` (hidden temp files and folders left out)."""
    if not layout.raw_dir.is_dir():
        return []
    return sorted(
        p
        for class_dir in layout.raw_dir.iterdir()
        if class_dir.is_dir() and not class_dir.name.startswith(".")
        for p in class_dir.iterdir()
        if p.is_file() and not p.name.startswith(".")
    )


def describe_file(path: Path) -> dict[str, Any]:
    """What can be rebuilt from a file alone: sha256, bytes, and pixel size and format when
    it decodes (an undecodable file is still adopted; the clean stage quarantines it)."""
    from PIL import Image, UnidentifiedImageError

    data = path.read_bytes()
    info: dict[str, Any] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    try:
        with Image.open(path) as im:
            info.update(width=im.size[0], height=im.size[1], format=im.format)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        pass
    return info


def adopt_raw_orphans(layout: Layout) -> list[dict[str, Any]]:
    """Append a record for every file in raw/ that the manifest lacks; drop settled intents.

    The caller must hold the storage (the refresh lock, or the crawl's per-storage lock):
    a file renamed by a commit still in flight would otherwise be adopted twice.
    """
    intents: dict[str, tuple[Path, dict[str, Any]]] = {}
    if pending_dir(layout).is_dir():
        for intent_path in sorted(pending_dir(layout).glob("*.json")):
            try:
                intent = read_json(intent_path)
                intents[intent["path"]] = (intent_path, intent)
            except (ValueError, KeyError, TypeError):  # torn by a crash before its rename
                intent_path.unlink(missing_ok=True)
    files = raw_files(layout)
    if not files and not intents:
        return []
    known = {r["path"] for r in read_jsonl(layout.raw_manifest)}
    adopted = []
    now = datetime.now(UTC).isoformat(timespec="seconds")
    for path in files:
        rel = path.relative_to(layout.raw_dir).as_posix()
        if rel in known:
            continue
        info = describe_file(path)
        intent_entry = intents.get(rel)
        if intent_entry and intent_entry[1].get("sha256") == info["sha256"]:
            provenance = dict(intent_entry[1].get("provenance") or {})
            how = "recorded intent"
        else:
            provenance = {"source": "recovered"}
            how = "rebuilt from the file"
        record = {
            **provenance,
            **info,
            "class": path.parent.name,
            "path": rel,
            "recovered": True,
            "recovered_from": how,
            "added_at": now,
        }
        append_jsonl(layout.raw_manifest, [record])
        adopted.append(record)
        known.add(rel)
        log.warning("raw/%s had no manifest record (a crash?): adopted, %s", rel, how)
    for rel, (intent_path, _) in intents.items():
        if rel in known or not (layout.raw_dir / rel).exists():
            intent_path.unlink(missing_ok=True)
    return adopted
