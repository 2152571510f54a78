"""Openverse: openly licensed images through its API (``/v1/images/``), used anonymously.

Anonymous limits (2026): about 20 requests a minute and 200 a day, ``page_size`` at most 20 and
at most 240 results a query (12 pages); the plan stays within them. Each result carries its
licence (code + version, and a URL), its creator and its landing page. HTTP 429 with
``{"detail": "Request was throttled..."}`` means *throttled*: no more requests this crawl.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import urlencode

from landmarks.crawl.blocks import Blocked
from landmarks.crawl.framework import Engine, EngineFeeder, EngineParser, Page, candidate
from landmarks.crawl.licenses import openverse_name
from landmarks.crawl.options import BLOCKED, THROTTLED

_LICENSE_TYPE = {"open": "all-cc", "commercial": "commercial"}


def openverse_block(text: str, status: int) -> None:
    if status in (401, 403, 429):
        try:
            detail = json.loads(text).get("detail", "")
        except (ValueError, AttributeError):
            detail = text[:120]
        state = THROTTLED if status == 429 else BLOCKED
        raise Blocked(state, f"Openverse HTTP {status}: {detail}"[:200])


def parse_openverse(data: dict) -> Page:
    return Page.unique(
        candidate(
            item.get("url"),
            page_url=item.get("foreign_landing_url"),
            license=openverse_name(item.get("license"), item.get("license_version")),
            license_url=item.get("license_url"),
            author=item.get("creator"),
            width=item.get("width"),
            height=item.get("height"),
            title=item.get("title"),
        )
        for item in data.get("results") or []
    )


class OpenverseEngine(Engine):
    name = "openverse"
    browser = False
    licensed = True

    def __init__(self, options) -> None:
        super().__init__(options)
        self.requests_per_min = options.openverse_requests_per_min
        self.requests_per_day = options.openverse_requests_per_day

    def page_urls(self, query: str, max_num: int) -> Iterator[str]:
        size = max(1, min(20, self.options.openverse_page_size))
        limit = min(max_num, self.options.openverse_max_results, 240)
        params = {"q": query, "page_size": size, "mature": "false"}
        if self.options.type_filter == "photo":
            params["category"] = "photograph"
        if self.options.license_filter in _LICENSE_TYPE:
            params["license_type"] = _LICENSE_TYPE[self.options.license_filter]
        for page in range(1, -(-limit // size) + 1):
            yield f"{self.base}/v1/images/?{urlencode({**params, 'page': page})}"

    def detect_block(self, text: str, status: int, url: str) -> None:
        openverse_block(text, status)

    def parse(self, text: str, url: str) -> Page:
        return parse_openverse(json.loads(text))


class OpenverseFeeder(EngineFeeder):
    """Pages of at most 20, at most 240 results a query."""


class OpenverseParser(EngineParser):
    """Reads results with licence, creator and landing page."""
