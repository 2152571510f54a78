"""Google Images: ``/search?tbm=isch`` result pages, and Google's block pages named as blocks.

Since 2025 Google answers most scripts with pages that hold no results, each with HTTP 200:

* the "enablejs" shell: a page whose ``<noscript>`` refreshes to ``/httpservice/retry/enablejs``;
* the ``/sorry/`` reCAPTCHA page ("unusual traffic from your computer network"), often with 429;
* the EU cookie-consent page (``consent.google.com``, "Before you continue to Google").

All of these are *blocked*, never "no results". Where Google does serve results, two layouts
are read: the 2020 ``AF_initDataCallback`` data (``[thumbnail, h, w], [full-size, h, w]``
pairs; the page in entry ``"2003"``), and the older async chunks with ``rg_meta`` JSON (``ou``
full-size, ``ru`` page, ``ow``/``oh`` size). The basic-HTML layout's ``/imgres?imgurl=`` links
are read too.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from urllib.parse import parse_qs, urlencode, urlsplit

from icrawler.builtin.google import GoogleFeeder as _IcrawlerGoogleFeeder

from landmarks.crawl.blocks import Blocked
from landmarks.crawl.framework import (
    Engine,
    EngineFeeder,
    EngineParser,
    Page,
    candidate,
    icrawler_filters,
)
from landmarks.crawl.options import BLOCKED, THROTTLED

PAGE_SIZE = 100
_PAIR = re.compile(
    r'\[\d+,\[\d+,"([^"]+)",\["(https?://[^"]+)",(\d+),(\d+)\]\s*,'
    r'\["(https?://[^"]+)",(\d+),(\d+)\]'
)
_PAGE_OF = re.compile(r'"2003":\[null,"([^"]+)","(https?://[^"]+)"')
_RG_META = re.compile(r'<div class="rg_meta[^"]*">(\{.*?\})</div>', re.S)
_IMGRES = re.compile(r'/imgres\?([^"\'\s>]+)')


def _unescape(url: str) -> str:
    """JavaScript string escapes Google uses in URLs (``\\u003d`` for '=', ``\\u0026``...)."""
    return re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), url)


def google_block(text: str, status: int, url: str) -> None:
    """Raise :class:`Blocked` on Google's block pages (see the module docstring)."""
    lowered = text.lower()
    path = urlsplit(url).path
    if path.startswith("/sorry") or "captcha-form" in lowered or "unusual traffic" in lowered:
        state = THROTTLED if status == 429 else BLOCKED
        raise Blocked(state, f"Google /sorry/ captcha page (HTTP {status}): unusual traffic")
    if "/httpservice/retry/enablejs" in lowered:
        raise Blocked(BLOCKED, f"Google enablejs shell (HTTP {status}): results need JavaScript")
    if "consent.google." in urlsplit(url).netloc or (
        "before you continue to google" in lowered and "af_initdatacallback" not in lowered
    ):
        raise Blocked(BLOCKED, f"Google cookie-consent page (HTTP {status}): 'Before you continue'")


class GoogleEngine(Engine):
    name = "google"

    def page_urls(self, query: str, max_num: int) -> Iterator[str]:
        tbs = icrawler_filters(_IcrawlerGoogleFeeder, self.options)
        hl = self.options.market.split("-")[0]
        for start in range(0, max_num, PAGE_SIZE):
            params = {
                "q": query,
                "tbm": "isch",
                "ijn": start // PAGE_SIZE,
                "start": start,
                "hl": hl,
                "tbs": ",".join(tbs),
            }
            yield f"{self.base}/search?{urlencode(params)}"

    def detect_block(self, text: str, status: int, url: str) -> None:
        google_block(text, status, url)

    def parse(self, text: str, url: str) -> Page:
        return parse_google(text)


def parse_google(text: str) -> Page:
    """Full-size candidates from a Google Images page (any layout above), without repeats."""
    out = []
    for m in _PAIR.finditer(text):
        # The result's page sits in its "2003" entry, a little after the image pair.
        page = _PAGE_OF.search(text, m.end(), m.end() + 4000)
        page_url = _unescape(page.group(2)) if page else None
        out.append(
            candidate(_unescape(m.group(5)), page_url=page_url, width=m.group(7), height=m.group(6))
        )
    for m in _RG_META.finditer(text):
        try:
            meta = json.loads(m.group(1))
        except ValueError:
            continue
        out.append(
            candidate(
                meta.get("ou"),
                page_url=meta.get("ru"),
                width=meta.get("ow"),
                height=meta.get("oh"),
                title=meta.get("pt"),
            )
        )
    for m in _IMGRES.finditer(text):
        q = {k: v[0] for k, v in parse_qs(html.unescape(m.group(1))).items()}
        out.append(
            candidate(
                q.get("imgurl"), page_url=q.get("imgrefurl"), width=q.get("w"), height=q.get("h")
            )
        )
    return Page.unique(out)


class GoogleFeeder(EngineFeeder):
    """Google Images result pages, 100 a page."""


class GoogleParser(EngineParser):
    """Reads Google's layouts; names its block pages."""
