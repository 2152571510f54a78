"""DuckDuckGo images (optional): a ``vqd`` token from the search page, then ``i.js`` JSON.

``i.js`` results carry ``image`` (full size), ``url`` (the page), ``width``/``height`` and a
``next`` link. A script DuckDuckGo distrusts gets ``DDG.deep.anomalyDetectionBlock(...)`` or an
HTTP 403: *blocked*.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

from landmarks.crawl.blocks import Blocked
from landmarks.crawl.framework import (
    Engine,
    EngineFeeder,
    EngineParser,
    Page,
    PageError,
    candidate,
    fetch,
)
from landmarks.crawl.options import BLOCKED

PAGE_SIZE = 100
_VQD = re.compile(r"""vqd\s*[=:]\s*\{?\s*(?:"[^"]*"\s*:\s*)?["']?(\d-[\d-]+)""")


def ddg_block(text: str, status: int) -> None:
    if "anomalyDetectionBlock" in text[:2000] or (status == 403 and "anomaly" in text.lower()):
        raise Blocked(BLOCKED, f"DuckDuckGo anomaly-detection block (HTTP {status})")


def parse_ddg(data: dict) -> Page:
    return Page.unique(
        candidate(
            item.get("image"),
            page_url=item.get("url"),
            width=item.get("width"),
            height=item.get("height"),
            title=item.get("title"),
        )
        for item in data.get("results") or []
    )


class DuckDuckGoEngine(Engine):
    name = "duckduckgo"

    def __init__(self, options) -> None:
        super().__init__(options)
        self.vqd = ""

    def warm_up(self, session: Any, query: str) -> None:
        url = f"{self.base}/?{urlencode({'q': query, 'iax': 'images', 'ia': 'images'})}"
        response = fetch(session, url, self.options)
        text = response.content.decode("utf-8", "replace")
        ddg_block(text, response.status_code)
        found = _VQD.search(text)
        if not found:
            raise Blocked(BLOCKED, "DuckDuckGo gave no vqd token (its search page changed)")
        self.vqd = found.group(1)

    def page_urls(self, query: str, max_num: int) -> Iterator[str]:
        region = self.options.market.lower().split("-")
        locale = f"{region[-1]}-{region[0]}" if len(region) == 2 else "us-en"
        for s in range(0, max_num, PAGE_SIZE):
            params = {"l": locale, "o": "json", "q": query, "vqd": self.vqd, "f": ",,,,,"}
            yield f"{self.base}/i.js?{urlencode({**params, 'p': '1', 's': s})}"

    def detect_block(self, text: str, status: int, url: str) -> None:
        ddg_block(text, status)

    def parse(self, text: str, url: str) -> Page:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise PageError(f"i.js answered something not JSON: {text[:80]!r}") from exc
        return parse_ddg(data)


class DuckDuckGoFeeder(EngineFeeder):
    """Token first, then i.js pages."""


class DuckDuckGoParser(EngineParser):
    """Reads i.js JSON; names the anomaly block."""
