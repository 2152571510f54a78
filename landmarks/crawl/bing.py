"""Bing image search: ``/images/async`` result pages.

Each tile is an ``a.iusc`` whose ``m`` attribute is HTML-escaped JSON: ``murl`` the full-size
image (any extension or none, query string kept), ``purl`` the page it sits on, ``turl`` a
thumbnail (taken only when ``murl`` is missing). The tile's link carries the image size
(``expw``/``exph``). The market is ``mkt`` plus ``Accept-Language`` (default en-US), so Bing does
not guess one from the client (icrawler sends zh-CN).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import parse_qs, quote_plus, urlsplit

from bs4 import BeautifulSoup
from icrawler.builtin.bing import BingFeeder as _IcrawlerBingFeeder

from landmarks.crawl.blocks import Blocked
from landmarks.crawl.framework import (
    Engine,
    EngineFeeder,
    EngineParser,
    Page,
    candidate,
    icrawler_filters,
)
from landmarks.crawl.options import BLOCKED

PAGE_SIZE = 35


def bing_filters(options) -> str:
    """The ``qft`` string for the type/size filters Bing understands."""
    return "".join(icrawler_filters(_IcrawlerBingFeeder, options))


class BingEngine(Engine):
    name = "bing"

    def page_urls(self, query: str, max_num: int) -> Iterator[str]:
        qft = bing_filters(self.options)
        # qft stays unencoded as Bing's own pages send it: '+' separates its filters.
        extra = f"&qft={qft}" if qft else ""
        for first in range(0, max_num, PAGE_SIZE):
            yield (
                f"{self.base}/images/async?q={quote_plus(query)}&first={first}"
                f"&count={PAGE_SIZE}&mkt={self.options.market}{extra}"
            )

    def detect_block(self, text: str, status: int, url: str) -> None:
        lowered = text[:20000].lower()
        if "/challenge/" in urlsplit(url).path or "captcha" in lowered and "iusc" not in lowered:
            raise Blocked(BLOCKED, "Bing answered a captcha / challenge page")

    def parse(self, text: str, url: str) -> Page:
        return parse_bing(text)


def parse_bing(text: str) -> Page:
    """Candidates from a Bing result page (``a.iusc`` tiles), in page order, without repeats."""
    soup = BeautifulSoup(text, "lxml")
    out = []
    for tile in soup.select("a.iusc"):
        try:
            meta = json.loads(str(tile.get("m") or ""))
        except ValueError:
            continue
        if not isinstance(meta, dict):
            continue
        image = meta.get("murl") or meta.get("turl")
        size = {k: v[0] for k, v in parse_qs(urlsplit(str(tile.get("href") or "")).query).items()}
        out.append(
            candidate(
                image,
                page_url=meta.get("purl"),
                title=(meta.get("t") or "").replace("\ue000", "").replace("\ue001", "") or None,
                width=size.get("expw"),
                height=size.get("exph"),
            )
        )
    return Page.unique(out)


class BingFeeder(EngineFeeder):
    """Bing's result pages, ``count`` images a page."""


class BingParser(EngineParser):
    """Reads ``a.iusc`` tiles as JSON."""
