"""Baidu image search: ``/search/acjson`` JSON pages, after a warm-up GET for cookies.

Without the cookies of the home page Baidu answers ``{"antiFlag": 1, "message": "Forbid
spider access"}`` with HTTP 200; a redirect to a captcha (``wappass.baidu.com``) is a block too.
Image URLs: the plain ``replaceUrl[].ObjURL`` (the last entry: the image on its own host, with
its ``FromURL`` page) is preferred over ``objURL``, which Baidu obfuscates (``ippr_z2C$q...``)
and which is decoded only when no plain URL is given.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlsplit

from icrawler.builtin.baidu import BaiduParser as _IcrawlerBaiduParser

from landmarks.crawl.blocks import Blocked
from landmarks.crawl.framework import Engine, EngineFeeder, EngineParser, Page, candidate, fetch
from landmarks.crawl.options import BLOCKED

PAGE_SIZE = 30
_SIZES = {"extralarge": 9, "large": 3, "medium": 2, "small": 1}


def decode_obj_url(url: str) -> str:
    """Baidu's obfuscated ``objURL`` -> the plain URL (icrawler's table)."""
    return _IcrawlerBaiduParser._decode_url(None, url)  # type: ignore[arg-type]


def baidu_block(text: str, url: str) -> None:
    parts = urlsplit(url)
    if "wappass.baidu.com" in parts.netloc or "captcha" in parts.path.lower():
        raise Blocked(BLOCKED, f"Baidu redirected to a captcha ({parts.netloc}{parts.path})")
    head = text[:400]
    if '"antiFlag"' in head or "'antiFlag'" in head:
        try:
            message = json.loads(text).get("message", "")
        except ValueError:
            message = ""
        raise Blocked(BLOCKED, f"Baidu antiFlag: {message or 'spider access refused'}")


class BaiduEngine(Engine):
    name = "baidu"

    def headers(self) -> dict[str, str]:
        return {**super().headers(), "Referer": f"{self.base}/"}

    def warm_up(self, session: Any, query: str) -> None:
        """The home page sets the cookies (BAIDUID...) without which acjson refuses."""
        response = fetch(session, f"{self.base}/", self.options)
        self.read_block_only(response)

    def read_block_only(self, response: Any) -> None:
        text = response.content.decode("utf-8", "replace")
        baidu_block(text, response.url)

    def page_urls(self, query: str, max_num: int) -> Iterator[str]:
        size = _SIZES.get(self.options.size_filter or "")
        for pn in range(0, max_num, PAGE_SIZE):
            url = (
                f"{self.base}/search/acjson?tn=resultjson_com&ipn=rj&word={quote(query)}"
                f"&queryWord={quote(query)}&pn={pn}&rn={PAGE_SIZE}"
            )
            yield url + (f"&z={size}" if size else "")

    def detect_block(self, text: str, status: int, url: str) -> None:
        baidu_block(text, url)

    def parse(self, text: str, url: str) -> Page:
        return parse_baidu(text)


def parse_baidu(text: str) -> Page:
    data = json.loads(text.replace("\\'", "'"), strict=False)
    out = []
    for item in data.get("data") or []:
        if not isinstance(item, dict) or not item:
            continue
        plain = [r for r in item.get("replaceUrl") or [] if isinstance(r, dict) and r.get("ObjURL")]
        if plain:
            url, page = plain[-1]["ObjURL"], plain[-1].get("FromURL")
        elif item.get("objURL"):
            url = item["objURL"]
            if url.startswith("ippr_"):
                url = decode_obj_url(url)
            page = item.get("fromURL")
            page = decode_obj_url(page) if page and page.startswith("ippr_") else page
        else:
            url, page = item.get("hoverURL"), None
        out.append(
            candidate(
                url,
                page_url=page,
                width=item.get("width"),
                height=item.get("height"),
                title=item.get("fromPageTitleEnc"),
            )
        )
    return Page.unique(out)


class BaiduFeeder(EngineFeeder):
    """Warm-up GET, then acjson pages of 30."""


class BaiduParser(EngineParser):
    """Reads acjson; names antiFlag and captcha redirects as blocks."""
