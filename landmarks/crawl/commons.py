"""Wikimedia Commons through its API (no key): licence, author and page for every file.

What a class asks (:meth:`CommonsEngine.queries`):

* ``Category:NAME`` from the catalog: the files of the category, recursing into subcategories
  to ``commons_depth`` levels, skipping subcategories whose names hold an excluded word
  (interiors, art, maps...);
* ``haswbstatement:P180=Q...``: the files whose structured data say they depict the class's
  Wikidata item (a CirrusSearch query on the File namespace);
* without either, a full-text search of the File namespace for each query.

Each request is ``action=query`` with ``prop=imageinfo`` (``iiurlwidth`` = ``thumb_width``, a
standard thumbnail width; url, size, mime, sha1 and ``extmetadata``: LicenseShortName,
LicenseUrl, Artist, AttributionRequired), paged through ``continue``, with ``maxlag``. Both
answer shapes are read: ``formatversion=1`` (``pages`` keyed by page id) and ``2`` (a list).
Wikimedia's rules: a descriptive User-Agent with contact details (``crawl.user_agent``;
library defaults are refused), ``maxlag`` (a lagged server answers an error with Retry-After),
and at most 2 parallel downloads from upload.wikimedia.org.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from bs4 import BeautifulSoup

from landmarks.catalog import Landmark
from landmarks.crawl.blocks import Blocked
from landmarks.crawl.framework import Engine, EngineFeeder, EngineParser, Page, candidate
from landmarks.crawl.options import BLOCKED, THROTTLED

API = "/w/api.php"
# Wanted: photographs of the place. Media Commons also holds that are not:
_MEDIA = re.compile(r"^image/(jpeg|png|webp|gif|tiff)$")
_EXTMETA = "LicenseShortName|LicenseUrl|Artist|AttributionRequired|UsageTerms|ObjectName"


def _text(html_or_text: Any) -> str | None:
    """extmetadata values hold HTML (links to user pages): keep the text."""
    if html_or_text in (None, ""):
        return None
    text = BeautifulSoup(str(html_or_text), "lxml").get_text()
    return " ".join(text.split()) or None


def _meta(info: dict, key: str) -> Any:
    value = (info.get("extmetadata") or {}).get(key)
    return value.get("value") if isinstance(value, dict) else value


def _pages(data: dict) -> list[dict]:
    pages = (data.get("query") or {}).get("pages") or []
    if isinstance(pages, dict):  # formatversion=1: keyed by page id, in no set order
        return sorted(pages.values(), key=lambda p: p.get("index", 0))
    return list(pages)


def parse_commons(data: dict, thumb_width: int = 1280) -> Page:
    """File candidates of one API answer (either format version), without repeats.

    ``file_url`` is the ``thumb_width`` thumbnail when the API gave one at least that wide
    (smaller originals come whole), else the original.
    """
    out = []
    for page in _pages(data):
        info = (page.get("imageinfo") or [None])[0]
        if not isinstance(info, dict) or not info.get("url"):
            continue
        mime = info.get("mime")
        if mime and not _MEDIA.match(mime):
            continue
        thumb = info.get("thumburl")
        wide_thumb = thumb and int(info.get("thumbwidth") or 0) >= thumb_width
        url = str(thumb if wide_thumb else info["url"])
        width, height = (
            (info.get("thumbwidth"), info.get("thumbheight"))
            if wide_thumb
            else (info.get("width"), info.get("height"))
        )
        out.append(
            candidate(
                url,
                page_url=info.get("descriptionurl"),
                license=_text(_meta(info, "LicenseShortName")),
                license_url=_meta(info, "LicenseUrl"),
                author=_text(_meta(info, "Artist")),
                width=width,
                height=height,
                title=page.get("title"),
            )
        )
    return Page.unique(out)


def commons_block(data: Any, status: int) -> None:
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return
    code, info = error.get("code", ""), error.get("info", "")
    if code in ("maxlag", "ratelimited", "too-many-requests"):
        raise Blocked(THROTTLED, f"Commons API {code}: {info}"[:200])
    raise Blocked(BLOCKED, f"Commons API error {code}: {info}"[:200])


class CommonsEngine(Engine):
    name = "commons"
    browser = False
    licensed = True
    max_downloads = 2

    def __init__(self, options) -> None:
        super().__init__(options)
        self._depth: dict[str, int] = {}
        self._excluded = re.compile(
            r"\b(" + "|".join(re.escape(w) for w in options.commons_exclude) + r")s?\b", re.I
        )

    def queries(self, landmark: Landmark) -> list[str]:
        out = []
        if landmark.commons_category:
            out.append("Category:" + landmark.commons_category.removeprefix("Category:"))
        if landmark.wikidata:
            out.append(f"haswbstatement:P180={landmark.wikidata}")
        return out or super().queries(landmark)

    def api_url(self, **params: Any) -> str:
        base = {
            "action": "query",
            "format": "json",
            "formatversion": "2",
            "prop": "imageinfo",
            "iiprop": "url|size|mime|sha1|extmetadata",
            "iiurlwidth": str(self.options.thumb_width),
            "iiextmetadatafilter": _EXTMETA,
            "maxlag": str(self.options.maxlag_s),
        }
        return f"{self.base}{API}?{urlencode({**base, **params})}"

    def _category_url(self, title: str) -> str:
        return self.api_url(
            generator="categorymembers",
            gcmtitle=title,
            gcmtype="file|subcat",
            gcmlimit="50",
        )

    def page_urls(self, query: str, max_num: int) -> Iterator[str]:
        if query.startswith("Category:"):
            self._depth[query] = 0
            yield self._category_url(query)
        else:
            yield self.api_url(generator="search", gsrsearch=query, gsrnamespace="6", gsrlimit="50")

    def detect_block(self, text: str, status: int, url: str) -> None:
        if status == 200 and text.lstrip().startswith("{"):
            commons_block(json.loads(text), status)

    def parse(self, text: str, url: str) -> Page:
        data = json.loads(text)
        page = parse_commons(data, self.options.thumb_width)
        page.follow = self._follow(data, url)
        return page

    def _follow(self, data: dict, url: str) -> list[str]:
        """The next page of this request (``continue``), then subcategories within depth."""
        follow = []
        parts = urlsplit(url)
        params = dict(parse_qsl(parts.query))
        if isinstance(data.get("continue"), dict):
            merged = {**params, **{k: str(v) for k, v in data["continue"].items()}}
            follow.append(urlunsplit(parts._replace(query=urlencode(merged))))
        title = params.get("gcmtitle")
        depth = self._depth.get(title or "", 0)
        if title and depth < self.options.commons_depth:
            for page in _pages(data):
                sub = page.get("title", "")
                if page.get("ns") != 14 or sub in self._depth:
                    continue
                if self._excluded.search(sub.removeprefix("Category:")):
                    continue
                self._depth[sub] = depth + 1
                follow.append(self._category_url(sub))
        return follow


class CommonsFeeder(EngineFeeder):
    """One API request per category, depicts statement or search query."""


class CommonsParser(EngineParser):
    """Reads imageinfo answers; follows ``continue`` and subcategories."""
