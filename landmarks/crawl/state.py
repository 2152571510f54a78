"""One class run (the shared state of every engine attempt for one class) and one attempt (the
counters and decisions of one engine on one query); both thread-safe."""

from __future__ import annotations

import logging
import re
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from landmarks.catalog import Landmark
from landmarks.crawl.blocks import BlockBoard, Blocked
from landmarks.crawl.download import TRANSIENT, Downloaded, Rejected
from landmarks.crawl.options import (
    EMPTY,
    ERROR,
    OK,
    URL_LIST,
    AttemptReport,
    CrawlOptions,
)
from landmarks.ingest import RawStore, now_iso
from landmarks.storage import Layout, append_jsonl, read_jsonl

log = logging.getLogger(__name__)

_FORMAT_SUFFIX = {
    "JPEG": ".jpg",
    "MPO": ".jpg",
    "PNG": ".png",
    "WEBP": ".webp",
    "GIF": ".gif",
    "BMP": ".bmp",
    "TIFF": ".tif",
    "AVIF": ".avif",
    "HEIF": ".heic",
}
_UNSAFE = re.compile(r"[^A-Za-z0-9._\-]+")
# What a raw record keeps of what the engine said about an image (null where it says nothing).
CREDIT_FIELDS = ("license", "license_url", "author", "page_url")

_LOCKS: dict[Path, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _storage_lock(layout: Layout) -> threading.Lock:
    """One lock per storage root in this process: classes crawled in parallel threads append
    to the same manifest."""
    key = layout.root.resolve()
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(key, threading.Lock())


def url_log_path(layout: Layout) -> Path:
    """Every URL a crawl tried that did not become a file in raw/, with the reason."""
    return layout.raw_dir / "crawl-urls.jsonl"


def known_urls(layout: Layout) -> set[str]:
    """URLs never to fetch again: held in raw/, or final failures and duplicates."""
    urls = {r["url"] for r in read_jsonl(layout.raw_manifest) if r.get("url")}
    for r in read_jsonl(url_log_path(layout)):
        if r.get("outcome") not in TRANSIENT:
            urls.add(r["url"])
    return urls


def _file_name(url: str, fmt: str) -> str:
    stem = Path(urlparse(url).path).stem
    stem = _UNSAFE.sub("_", stem).strip("._")[:80] or "image"
    return stem + _FORMAT_SUFFIX.get(fmt, "." + fmt.lower())


class ClassRun:
    def __init__(
        self,
        landmark: Landmark,
        layout: Layout,
        options: CrawlOptions,
        refresh_id: str,
        progress: Callable[[int, int], None] | None,
    ) -> None:
        self.landmark, self.layout, self.options = landmark, layout, options
        self.refresh_id, self.progress = refresh_id, progress
        self.lock = _storage_lock(layout)
        with self.lock:
            self.store = RawStore(layout)
            self.known = known_urls(layout)
        self.had_before = sum(1 for r in self.store.records if r["class"] == landmark.name)
        self.tried: set[str] = set()
        self.added = 0
        self.staging_dir = layout.root / ".crawl-staging" / landmark.name
        self.staging_dir.mkdir(parents=True, exist_ok=True)
        for leftover in self.staging_dir.glob(".dl-*.part"):  # from a killed run
            leftover.unlink(missing_ok=True)

    @property
    def remaining(self) -> int:
        return self.options.max_per_class - self.added


class Attempt:
    """Counters and decisions of one (engine, query) crawl; thread-safe."""

    def __init__(self, run: ClassRun, engine: str, query: str, wanted: int) -> None:
        self.run, self.engine, self.query, self.wanted = run, engine, query, wanted
        self.options = run.options
        self.signal: Any = None
        self.counts: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.notes: list[str] = []
        self.pages_done: set[str] = set()
        self.page_errors: set[str] = set()
        self.added = 0
        self.block: Blocked | None = None
        self._lock = threading.Lock()

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counts[name] += n

    def note(self, text: str) -> None:
        with self._lock:
            if text not in self.notes:
                self.notes.append(text)

    def page_done(self, url: str, status: int) -> None:
        with self._lock:
            self.pages_done.add(url)
            if status != 200:
                self.counts["bad_pages"] += 1

    def page_error(self, url: str, text: str) -> None:
        with self._lock:
            self.page_errors.add(url)
        self.note(text[:200])

    def blocked(self, block: Blocked) -> None:
        """The engine refused (captcha, consent, 403/429...): remember it for the whole crawl,
        so neither this class nor the next asks it again."""
        with self._lock:
            if self.block is None:
                self.block = block
        BlockBoard.mark(self.run.refresh_id, self.engine, block.status, block.reason)
        log.warning("%s is %s: %s", self.engine, block.status, block.reason)

    def claim(self, url: str) -> bool:
        """True if this thread should download ``url``: not held, not tried in this run."""
        run = self.run
        with run.lock:
            if url in run.known or url in run.store.known_urls:
                self.count("known")
                return False
            if url in run.tried:
                self.count("known")
                return False
            run.tried.add(url)
            return True

    def _log_url(self, url: str, outcome: str, detail: str, **extra: Any) -> None:
        append_jsonl(
            url_log_path(self.run.layout),
            [
                {
                    "url": url,
                    "class": self.run.landmark.name,
                    "outcome": outcome,
                    "detail": detail,
                    "engine": self.engine,
                    "query": self.query,
                    "refresh": self.run.refresh_id,
                    "at": now_iso(),
                    **extra,
                }
            ],
        )

    def reject(self, url: str, rejection: Rejected) -> None:
        if rejection.reason == "cancelled":
            with self.run.lock:
                self.run.tried.discard(url)  # never looked at: a later attempt may fetch it
            return
        self.count("rejected")
        with self._lock:
            self.rejected[rejection.reason] += 1
        log.info("%s rejected (%s): %s", url, rejection.reason, rejection.detail)
        with self.run.lock:
            self._log_url(url, rejection.reason, rejection.detail)
            if rejection.reason not in TRANSIENT:
                self.run.known.add(url)

    def commit(self, item: Downloaded, task: dict[str, Any]) -> bool:
        """Rename a verified download into raw/ unless the crawl is full or holds its bytes."""
        run = self.run
        url = task["file_url"]
        with run.lock:
            if run.remaining <= 0 or self.added >= self.wanted:
                item.path.unlink(missing_ok=True)
                run.tried.discard(url)
                self._enough()
                return False
            if run.store.has(run.landmark.name, item.sha256):
                item.path.unlink(missing_ok=True)
                self.count("duplicates")
                self._log_url(
                    url,
                    "duplicate",
                    f"same bytes as a held {run.landmark.name} image",
                    sha256=item.sha256,
                )
                run.known.add(url)
                return False
            run.store.adopt_file(
                item.path,
                run.landmark.name,
                {
                    "source": self.engine,
                    "engine": self.engine,
                    "query": self.query,
                    "url": url,
                    **{k: task.get(k) for k in CREDIT_FIELDS},
                    "title": task.get("title"),
                    "rank": task.get("rank"),
                    "refresh": run.refresh_id,
                    "fetched_at": now_iso(),
                    "width": item.width,
                    "height": item.height,
                    "format": item.format,
                    "content_type": item.content_type,
                },
                name=_file_name(url, item.format),
                digest=item.sha256,
            )
            run.added += 1
            self.added += 1
            done = run.added
            if run.remaining <= 0 or self.added >= self.wanted:
                self._enough()
        if run.progress is not None:
            run.progress(done, run.options.max_per_class)
        return True

    def _enough(self) -> None:
        if self.signal is not None:
            self.signal.set(reach_max_num=True)

    def report(self, seconds: float) -> AttemptReport:
        notes = list(self.notes)
        fed = self.counts["pages_fed"]
        pages = len(self.pages_done | self.page_errors)
        failed = self.counts["bad_pages"] + len(self.page_errors - self.pages_done)
        if self.engine != URL_LIST and fed and not self.pages_done and self.block is None:
            notes.insert(0, f"none of {fed} result pages could be fetched")
        status = self._status(failed)
        if self.block is not None:
            notes.insert(0, self.block.reason)
        return AttemptReport(
            engine=self.engine,
            query=self.query,
            wanted=self.wanted,
            pages=pages,
            pages_failed=failed,
            results=self.counts["results"],
            known=self.counts["known"],
            added=self.added,
            duplicates=self.counts["duplicates"],
            rejected=dict(self.rejected),
            seconds=round(seconds, 3),
            note="; ".join(notes)[:600],
            status=status,
        )

    def _status(self, failed: int) -> str:
        if self.block is not None:
            return self.block.status
        if self.counts["results"]:
            return OK
        pages = len(self.pages_done | self.page_errors)
        return ERROR if failed and failed >= pages else EMPTY
