"""Block pages named as blocks, not mistaken for empty results.

An engine that answers a script with a captcha, a consent page, a JavaScript shell, an
``antiFlag`` or an HTTP 403/429 is *blocked* (or *throttled*): the crawl stops asking it for the
rest of the crawl (:class:`BlockBoard`), notes why, and the next engine takes over.
"""

from __future__ import annotations

import threading
from typing import Any

from bs4 import BeautifulSoup

from landmarks.crawl.options import BLOCKED, THROTTLED


class Blocked(Exception):
    """An engine refused to serve results. ``status`` is ``blocked`` or ``throttled``."""

    def __init__(self, status: str, reason: str, retry_after_s: float | None = None) -> None:
        super().__init__(f"{status}: {reason}")
        self.status, self.reason, self.retry_after_s = status, reason, retry_after_s


def retry_after(headers: Any) -> float | None:
    """Seconds from a ``Retry-After`` header (seconds form only), or None."""
    value = (headers or {}).get("Retry-After", "")
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def check_status(status: int, body: str, headers: Any = None) -> None:
    """HTTP answers that are blocks whatever the engine: 429 (throttled), 403 (blocked)."""
    snippet = " ".join(body.split())[:120]
    if status == 429:
        raise Blocked(THROTTLED, f"HTTP 429 {snippet!r}".strip(), retry_after(headers))
    if status == 403:
        raise Blocked(BLOCKED, f"HTTP 403 {snippet!r}".strip())


_PAGE_HINTS = (
    ("/httpservice/retry/enablejs", "a JavaScript-only page (enablejs shell)"),
    ("unusual traffic", "the engine suspects a robot (rate limit or captcha)"),
    ("captcha", "a captcha page"),
    ("before you continue", "a cookie-consent page"),
    ("consent", "a cookie-consent page"),
    ("enable javascript", "a page that needs JavaScript"),
)


def describe_page(content: bytes | str, status: int = 200, url: str = "") -> str:
    """One line on what a result page held: size, title, scripts, images, a hint, a snippet."""
    text = content.decode("utf-8", "ignore") if isinstance(content, bytes) else content
    soup = BeautifulSoup(text, "lxml")
    title = soup.title.get_text(strip=True) if soup.title else ""
    snippet = " ".join(soup.get_text(" ", strip=True).split())[:160]
    lowered = text.lower()
    hint = next((h for marker, h in _PAGE_HINTS if marker in lowered), "")
    parts = [
        f"HTTP {status}",
        f"{len(content)} bytes",
        f"title {title!r}",
        f"{len(soup.find_all('script'))} <script>",
        f"{len(soup.find_all('img'))} <img>",
    ]
    if hint:
        parts.append(hint)
    parts.append(f"text {snippet!r}")
    return (f"{url}: " if url else "") + ", ".join(parts)


class BlockBoard:
    """Engines that blocked during one crawl (keyed by its refresh id), shared by the class
    crawls of that refresh, so a blocked engine is not asked again."""

    _boards: dict[str, dict[str, tuple[str, str]]] = {}
    _lock = threading.Lock()

    @classmethod
    def mark(cls, refresh_id: str, engine: str, status: str, reason: str) -> None:
        with cls._lock:
            cls._boards.setdefault(refresh_id, {}).setdefault(engine, (status, reason))

    @classmethod
    def get(cls, refresh_id: str, engine: str) -> tuple[str, str] | None:
        with cls._lock:
            return cls._boards.get(refresh_id, {}).get(engine)

    @classmethod
    def all(cls, refresh_id: str) -> dict[str, tuple[str, str]]:
        with cls._lock:
            return dict(cls._boards.get(refresh_id, {}))
