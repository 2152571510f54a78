"""``landmarks crawl --dry-run``: ask the engines as a crawl would, download no image.

The answer says, per engine, whether it works from this network today (``ok``, ``empty``,
``blocked``/``throttled`` with the reason, ``error``) and lists every candidate a crawl would
consider: class, engine, query, image URL, page, licence, author, size (null where unknown).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import requests

from landmarks.catalog import Landmark
from landmarks.crawl.blocks import Blocked
from landmarks.crawl.engines import licence_skip, make_engine
from landmarks.crawl.framework import Engine, PageError, fetch
from landmarks.crawl.options import BLOCKED, EMPTY, ERROR, OK, THROTTLED, CrawlOptions

log = logging.getLogger(__name__)
CANDIDATE_FIELDS = ("class", "engine", "query", "url", "page_url", "license", "author")


class _EngineLog:
    def __init__(self) -> None:
        self.status = ""
        self.detail = ""
        self.pages = 0
        self.errors: list[str] = []
        self.found = 0

    def result(self) -> dict[str, str]:
        if self.status in (BLOCKED, THROTTLED):
            return {"status": self.status, "detail": self.detail}
        if self.status == "skipped":
            return {"status": EMPTY, "detail": self.detail}
        if self.found:
            return {"status": OK, "detail": f"{self.found} candidates from {self.pages} pages"}
        if self.errors and not self.pages:
            return {"status": ERROR, "detail": "; ".join(self.errors[:3])}
        detail = f"no candidates in {self.pages} pages"
        if self.errors:
            detail += "; " + "; ".join(self.errors[:3])
        return {"status": EMPTY, "detail": detail}


def _query_candidates(
    engine: Engine, session: Any, query: str, wanted: int, seen: set[str], log_: _EngineLog
) -> list[dict[str, Any]]:
    """Read an engine's pages for one query as a crawl would (same stops), without downloads."""
    found: list[dict[str, Any]] = []
    engine.warm_up(session, query)
    empty_pages = 0
    for first in engine.page_urls(query, wanted):
        pending = [first]
        while pending:
            url = pending.pop(0)
            engine.pace()
            try:
                response = fetch(session, url, engine.options)
            except requests.RequestException as exc:
                log_.errors.append(f"{type(exc).__name__}: {exc}"[:200])
                continue
            log_.pages += 1
            try:
                page = engine.read(
                    response.content, response.status_code, response.url, response.headers
                )
            except PageError as exc:
                log_.errors.append(str(exc))
                continue
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                log_.errors.append(f"the {engine.name} parser failed: {exc!r}"[:200])
                continue
            new = [c for c in page.candidates if c["file_url"] not in seen]
            seen.update(c["file_url"] for c in new)
            found.extend(new)
            empty_pages = 0 if new else empty_pages + 1
            pending.extend(page.follow)
        if empty_pages >= 2 or len(found) >= wanted:
            break
    return found


def dry_run(landmarks: Iterable[Landmark], options: CrawlOptions) -> dict[str, Any]:
    """What a crawl would fetch: ``{"engines": {...}, "candidates": [...]}`` (see module)."""
    logs = {name: _EngineLog() for name in options.engines}
    candidates: list[dict[str, Any]] = []
    for landmark in landmarks:
        for name in options.engines:
            state = logs[name]
            if state.status:  # blocked, throttled or skipped: not asked again
                continue
            engine = make_engine(name, options)
            skip = licence_skip(engine)
            if skip:
                state.status, state.detail = "skipped", skip
                continue
            session = requests.Session()
            session.headers.update(engine.headers())
            seen: set[str] = set()
            queries = engine.queries(landmark)
            for query in queries:
                wanted = -(-options.max_per_class // max(1, len(queries)))
                try:
                    found = _query_candidates(engine, session, query, wanted, seen, state)
                except Blocked as block:
                    state.status, state.detail = block.status, block.reason
                    log.warning("%s is %s: %s", name, block.status, block.reason)
                    break
                except requests.RequestException as exc:
                    state.errors.append(f"{type(exc).__name__}: {exc}"[:200])
                    continue
                state.found += len(found)
                candidates.extend(
                    {
                        "class": landmark.name,
                        "engine": name,
                        "query": query,
                        "url": c["file_url"],
                        "page_url": c.get("page_url"),
                        "license": c.get("license"),
                        "author": c.get("author"),
                        "width": c.get("width"),
                        "height": c.get("height"),
                    }
                    for c in found
                )
    return {"engines": {name: s.result() for name, s in logs.items()}, "candidates": candidates}
