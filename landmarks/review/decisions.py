"""Review decisions: a person's keep / remove / relabel verdicts on photos, and applying them.

Decisions live in ``review/decisions.json``, keyed by the photo's pixel hash, and are written
atomically on every change. Each carries the photo's content hashes and the perceptual hashes
of its eight flips and rotations, so a later crawl that brings the same photo again (the same
pixels, the same bytes, or a near duplicate re-encoded or resized by another site) gets the
same verdict. Applying decisions filters and relabels the dedup keepers into
``review/kept.jsonl``, which the split reads instead; raw and clean files are never deleted.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from landmarks.storage import Layout, atomic_write_json, read_json, read_jsonl, write_jsonl

log = logging.getLogger(__name__)

KEEP = "keep"
REMOVE = "remove"
RELABEL = "relabel"
ACTIONS = (KEEP, REMOVE, RELABEL)
BY_PERSON = "person"
BY_AUTO = "auto"
FORMAT_VERSION = 1


def review_dir(layout: Layout) -> Path:
    return layout.root / "review"


def decisions_path(layout: Layout) -> Path:
    return review_dir(layout) / "decisions.json"


def reviewed_kept_path(layout: Layout) -> Path:
    return review_dir(layout) / "kept.jsonl"


def applied_report_path(layout: Layout) -> Path:
    return review_dir(layout) / "applied.json"


def suspects_path(layout: Layout) -> Path:
    return layout.root / "suspects" / "suspects.json"


class DecisionError(ValueError):
    """A decision that cannot be recorded (unknown action, relabel without a class...)."""


@dataclass(frozen=True)
class ApplyResult:
    kept_path: Path
    report_path: Path
    num_in: int
    num_out: int
    removed: int
    relabelled: int
    matched_near: int  # of those, matched by perceptual hash rather than content hash


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class DecisionStore:
    """The decisions file. Thread-safe within a process; every change is one atomic write."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def load(self) -> dict[str, dict[str, Any]]:
        if not self.path.exists():
            return {}
        data = read_json(self.path)
        if data.get("version") != FORMAT_VERSION:
            raise DecisionError(
                f"{self.path}: unknown decisions format {data.get('version')!r}; "
                f"expected {FORMAT_VERSION}"
            )
        return dict(data.get("decisions", {}))

    def _save(self, decisions: dict[str, dict[str, Any]]) -> None:
        atomic_write_json(
            self.path,
            {"version": FORMAT_VERSION, "updated_at": now_iso(), "decisions": decisions},
        )

    def decide(
        self,
        photo: dict[str, Any],
        action: str,
        new_label: str | None = None,
        by: str = BY_PERSON,
        note: str | None = None,
        overwrite: bool = True,
    ) -> dict[str, Any] | None:
        """Record ``action`` on ``photo`` (a record with path, label/class, pixel_hash, and
        ideally sha256, raw_sha256 and phash variants). Returns the stored decision, or None
        when ``overwrite`` is False and a decision already exists."""
        if action not in ACTIONS:
            raise DecisionError(f"unknown action {action!r}; use one of {', '.join(ACTIONS)}")
        label = photo.get("label") or photo.get("class")
        if action == RELABEL and (not new_label or new_label == label):
            raise DecisionError("relabel needs a new class different from the current one")
        key = photo.get("pixel_hash")
        if not key:
            raise DecisionError(f"photo {photo.get('path')!r} has no pixel_hash to key on")
        decision = {
            "action": action,
            "label": label,
            "new_label": new_label if action == RELABEL else None,
            "path": photo.get("path"),
            "pixel_hash": key,
            "sha256": photo.get("sha256"),
            "raw_sha256": photo.get("raw_sha256"),
            "phash": list(photo.get("phash_variants") or []),
            "by": by,
            "decided_at": now_iso(),
        }
        if note:
            decision["note"] = note
        with self._lock:
            decisions = self.load()
            if not overwrite and key in decisions:
                return None
            decisions[key] = decision
            self._save(decisions)
        log.info("review: %s %s (%s)", action, photo.get("path"), by)
        return decision

    def clear(self, key: str) -> bool:
        with self._lock:
            decisions = self.load()
            if decisions.pop(key, None) is None:
                return False
            self._save(decisions)
        return True


def _words(hex_hash: str) -> tuple[int, ...]:
    h = hex_hash.rjust(((len(hex_hash) + 15) // 16) * 16, "0")
    return tuple(int(h[i : i + 16], 16) for i in range(0, len(h), 16))


class DecisionIndex:
    """Finds the decision that applies to a record: the same pixels, the same file bytes, the
    same raw bytes, or else the nearest perceptual hash (any flip or rotation) within
    ``max_distance`` bits."""

    def __init__(self, decisions: dict[str, dict[str, Any]], max_distance: int) -> None:
        self.decisions = decisions
        self.max_distance = max_distance
        self.exact: dict[str, str] = {}
        for key, d in decisions.items():
            for field in ("pixel_hash", "sha256", "raw_sha256"):
                if d.get(field):
                    self.exact.setdefault(f"{field}:{d[field]}", key)
        self.near_keys: list[str] = []
        rows: list[list[tuple[int, ...]]] = []
        for key, d in decisions.items():
            variants = [v for v in d.get("phash") or [] if v]
            if variants:
                self.near_keys.append(key)
                rows.append([_words(v) for v in variants])
        self._by_width: dict[int, tuple[list[str], np.ndarray]] = {}
        groups: dict[int, tuple[list[str], list[list[tuple[int, ...]]]]] = {}
        for key, variants in zip(self.near_keys, rows, strict=True):
            width = len(variants[0])
            keys, vals = groups.setdefault(width, ([], []))
            keys.append(key)
            vals.append(variants)
        for width, (keys, vals) in groups.items():
            most = max(len(v) for v in vals)
            padded = [v + [v[0]] * (most - len(v)) for v in vals]
            self._by_width[width] = (keys, np.array(padded, dtype=np.uint64))

    def match(self, record: dict[str, Any]) -> tuple[str, dict[str, Any], str, int] | None:
        """(decision key, decision, how, distance) or None."""
        for field in ("pixel_hash", "sha256", "raw_sha256"):
            value = record.get(field)
            key = self.exact.get(f"{field}:{value}") if value else None
            if key is not None:
                return key, self.decisions[key], field, 0
        phash = record.get("phash")
        if not phash or not self._by_width:
            return None
        words = np.array(_words(phash), dtype=np.uint64)
        entry = self._by_width.get(len(words))
        if entry is None:
            return None
        keys, variants = entry
        dist = np.bitwise_count(variants ^ words[None, None, :]).sum(-1).min(-1)
        best = int(dist.argmin())
        if int(dist[best]) > self.max_distance:
            return None
        return keys[best], self.decisions[keys[best]], "phash", int(dist[best])


def apply_decisions(
    records: Iterable[dict[str, Any]],
    decisions: dict[str, dict[str, Any]],
    max_distance: int,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Filter and relabel ``records`` (dedup keepers) by the decisions.

    Returns (records to keep, with ``class`` changed where relabelled and ``label_was`` added;
    one report row per record a decision touched).
    """
    index = DecisionIndex(decisions, max_distance)
    out: list[dict[str, Any]] = []
    touched: list[dict[str, Any]] = []
    for r in records:
        found = index.match(r)
        if found is None:
            out.append(r)
            continue
        key, decision, how, distance = found
        action = decision["action"]
        row = {
            "path": r["path"],
            "class": r["class"],
            "action": action,
            "decision": key,
            "matched_by": how,
            "distance": distance,
            "by": decision.get("by", BY_PERSON),
        }
        if action == REMOVE:
            touched.append(row)
            continue
        if action == RELABEL and decision.get("new_label") and decision["new_label"] != r["class"]:
            out.append({**r, "class": decision["new_label"], "label_was": r["class"]})
            touched.append({**row, "new_class": decision["new_label"]})
            continue
        out.append(r)
        touched.append(row)
    return out, touched


def photo_variants(image_path: Path, phash: str | None) -> list[str]:
    """Perceptual hashes of the 8 flips and rotations of a clean photo, in the hash size of
    ``phash`` (the keeper record's own hash), so later near duplicates can be recognised."""
    from PIL import Image

    from landmarks.dedup import dihedral_phashes

    hash_size = int(round((len(phash) * 4) ** 0.5)) if phash else 8
    with Image.open(image_path) as im:
        return dihedral_phashes(im, hash_size)


def auto_remove(
    store: DecisionStore,
    suspects: Iterable[dict[str, Any]],
    min_confidence: float,
    clean_dir: Path,
) -> list[dict[str, Any]]:
    """Record a ``remove`` by ``auto`` for every suspect whose confidence in another class is
    at least ``min_confidence``. A decision already on file (a person's above all) wins."""
    made = []
    existing = store.load()
    for s in suspects:
        if s["suggested"] == s["label"] or s["suggested_confidence"] < min_confidence:
            continue
        if s.get("pixel_hash") in existing:
            continue
        photo = {**s, "phash_variants": photo_variants(Path(clean_dir) / s["path"], s.get("phash"))}
        decision = store.decide(
            photo,
            REMOVE,
            by=BY_AUTO,
            note=f"{s['suggested_confidence']:.2f} confident it is {s['suggested']}",
            overwrite=False,
        )
        if decision is not None:
            made.append(decision)
    return made


def apply_to_kept(layout: Layout, kept_path: Path, max_distance: int) -> ApplyResult:
    """Write ``review/kept.jsonl``: the dedup keepers at ``kept_path`` with every decision
    applied, and ``review/applied.json`` listing what each decision did."""
    records = read_jsonl(kept_path)
    decisions = DecisionStore(decisions_path(layout)).load()
    kept, touched = apply_decisions(records, decisions, max_distance)
    out_path = reviewed_kept_path(layout)
    write_jsonl(out_path, kept)
    removed = sum(1 for t in touched if t["action"] == REMOVE)
    relabelled = sum(1 for t in touched if "new_class" in t)
    near = sum(1 for t in touched if t["matched_by"] == "phash" and t["action"] != KEEP)
    atomic_write_json(
        applied_report_path(layout),
        {
            "source": str(kept_path),
            "num_decisions": len(decisions),
            "num_in": len(records),
            "num_out": len(kept),
            "removed": removed,
            "relabelled": relabelled,
            "touched": touched,
        },
    )
    log.info(
        "review: %d decisions -> %d removed, %d relabelled (%d by near duplicate), %d of %d kept",
        len(decisions),
        removed,
        relabelled,
        near,
        len(kept),
        len(records),
    )
    return ApplyResult(
        kept_path=out_path,
        report_path=applied_report_path(layout),
        num_in=len(records),
        num_out=len(kept),
        removed=removed,
        relabelled=relabelled,
        matched_near=near,
    )
