"""The frame every source plugs into, on icrawler's framework.

A source is an :class:`Engine` (what to ask, how to read the answer: pure functions of the
bytes, so tests and the dry run read recorded pages exactly as a crawl does) and a feeder +
parser pair built on icrawler's :class:`~icrawler.Feeder` and :class:`~icrawler.Parser`;
:class:`EngineCrawler` runs them with our atomic downloader.

* Every request goes to ``options.base_url(engine)`` (``crawl.endpoints`` replaces it, path and
  query kept): token and warm-up requests, API calls and result pages alike.
* A block (captcha, consent, JavaScript shell, antiFlag, 403/429) raises :class:`Blocked`: the
  attempt stops at once, the engine is marked for the rest of the crawl, nothing is retried.
* Network errors, timeouts and 5xx pages are retried with exponential backoff and jitter.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests
from icrawler import Crawler, Feeder, Parser

from landmarks.catalog import Landmark
from landmarks.crawl import licenses
from landmarks.crawl.blocks import Blocked, check_status, describe_page, retry_after
from landmarks.crawl.download import RETRY_STATUSES, backoff
from landmarks.crawl.options import BROWSER_USER_AGENT, THROTTLED, CrawlOptions
from landmarks.crawl.state import Attempt

log = logging.getLogger(__name__)


class PageError(Exception):
    """A result page that is neither results nor a block (HTTP 404, 500 after retries...)."""


@dataclass
class Page:
    """What one answer held: image candidates, and further pages of the same request
    (``continue`` paging, subcategories) to read next."""

    candidates: list[dict[str, Any]] = field(default_factory=list)
    follow: list[str] = field(default_factory=list)

    @classmethod
    def unique(cls, candidates: Iterable[dict[str, Any]]) -> Page:
        """The candidates in page order, without those lacking a URL and without repeats."""
        seen: set[str] = set()
        kept = []
        for c in candidates:
            if c["file_url"] and c["file_url"] not in seen:
                seen.add(c["file_url"])
                kept.append(c)
        return cls(kept)


def candidate(
    url: str | None,
    *,
    page_url: str | None = None,
    license: str | None = None,
    license_url: str | None = None,
    author: str | None = None,
    width: Any = None,
    height: Any = None,
    title: str | None = None,
) -> dict[str, Any]:
    """One image an engine offers (``file_url`` is what the downloader fetches)."""

    def _int(v: Any) -> int | None:
        try:
            return int(v) if v not in (None, "") else None
        except (TypeError, ValueError):
            return None

    return {
        "file_url": url or "",
        "page_url": page_url or None,
        "license": license or None,
        "license_url": license_url or None,
        "author": author or None,
        "width": _int(width),
        "height": _int(height),
        "title": title or None,
    }


def queries_for(landmark: Landmark) -> list[str]:
    """The catalog's queries, then the English and local names if not among them."""
    out: list[str] = []
    seen: set[str] = set()
    for q in (*landmark.queries, landmark.english, landmark.local):
        key = " ".join(q.split()).casefold()
        if key and key not in seen:
            seen.add(key)
            out.append(q)
    return out


class _Pacer:
    """Request slots per engine: at most ``per_min`` a minute, ``per_day`` a day (UTC)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next: dict[str, float] = {}
        self._day: dict[str, tuple[str, int]] = {}

    def wait(self, engine: str, per_min: float, per_day: int) -> None:
        if per_day:
            today = time.strftime("%Y-%m-%d", time.gmtime())
            with self._lock:
                day, used = self._day.get(engine, (today, 0))
                used = used if day == today else 0
                if used >= per_day:
                    name = engine.split()[0]
                    raise Blocked(
                        THROTTLED, f"{name}: the {per_day} requests a day allowed are used up"
                    )
                self._day[engine] = (today, used + 1)
        if per_min <= 0:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next.get(engine, now))
            self._next[engine] = start + 60.0 / per_min
        if start > now:
            time.sleep(start - now)


_PACER = _Pacer()
_SLOTS: dict[str, threading.BoundedSemaphore] = {}
_SLOTS_LOCK = threading.Lock()


class Engine:
    """One source: its requests and how to read its answers. Subclasses set ``name`` and
    implement :meth:`page_urls` and :meth:`parse`."""

    name = ""
    browser = True  # a browser User-Agent (search pages) or the descriptive one (APIs)
    licensed = False  # gives a licence per image
    max_downloads = 32  # parallel image downloads this source's hosts accept, per process
    requests_per_min: float = 0.0  # 0: no pacing beyond request_delay_s
    requests_per_day: int = 0  # 0: no daily budget

    def __init__(self, options: CrawlOptions) -> None:
        self.options = options
        self.base = options.base_url(self.name)

    def headers(self) -> dict[str, str]:
        agent = BROWSER_USER_AGENT if self.browser else self.options.user_agent
        return {"User-Agent": agent, "Accept-Language": f"{self.options.market},en;q=0.8"}

    def queries(self, landmark: Landmark) -> list[str]:
        return queries_for(landmark)

    def pace(self) -> None:
        """Wait for this engine's next request slot (shared by every thread of the process)
        and count it against its daily budget; a spent budget is *throttled*."""
        _PACER.wait(f"{self.name} {self.base}", self.requests_per_min, self.requests_per_day)

    def download_slots(self) -> threading.BoundedSemaphore:
        """Parallel downloads from this source's hosts, across all classes of the process."""
        with _SLOTS_LOCK:
            key = f"{self.name} {self.base}"
            return _SLOTS.setdefault(key, threading.BoundedSemaphore(self.max_downloads))

    def warm_up(self, session: Any, query: str) -> None:
        """Requests a source needs before its result pages (cookies, a token)."""

    def page_urls(self, query: str, max_num: int) -> Iterator[str]:
        raise NotImplementedError

    def detect_block(self, text: str, status: int, url: str) -> None:
        """Raise :class:`Blocked` when the answer is this engine's block page."""

    def parse(self, text: str, url: str) -> Page:
        raise NotImplementedError

    def read(
        self, body: bytes | str, status: int, url: str, headers: Mapping | None = None
    ) -> Page:
        """Read one answer: a block raises :class:`Blocked`, an error page :class:`PageError`,
        anything else gives its candidates (none on an empty page)."""
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        self.detect_block(text, status, url)
        check_status(status, text, headers)
        if status != 200:
            raise PageError(f"result page answered HTTP {status}")
        page = self.parse(text, url)
        if self.options.license_filter != "any":
            page.candidates = [
                c
                for c in page.candidates
                if licenses.keep(self.options.license_filter, c["license"], c["license_url"])
            ]
        return page


def fetch(session: Any, url: str, options: CrawlOptions, **kwargs: Any) -> requests.Response:
    """GET with retries of network errors and 408/5xx answers (exponential backoff, jitter); a
    429 is waited out once when it says Retry-After within ``max_retry_after_s``."""
    waited_429 = False
    for attempt in range(options.max_retries + 1):
        if attempt:
            time.sleep(backoff(options, attempt))
        try:
            response = session.get(url, timeout=options.timeout_s, **kwargs)
        except requests.RequestException:
            if attempt == options.max_retries:
                raise
            continue
        # A 429, or a MediaWiki maxlag error (HTTP 200), says when to come back.
        if response.status_code == 429 or (
            "Retry-After" in response.headers and b'"maxlag"' in response.content[:400]
        ):
            wait = retry_after(response.headers)
            if waited_429 or wait is None or wait > options.max_retry_after_s:
                return response
            waited_429 = True
            time.sleep(wait)
            continue
        if response.status_code not in RETRY_STATUSES or attempt == options.max_retries:
            return response
    return response


def _stopped(signal: Any) -> bool:
    return bool(signal.get("reach_max_num") or signal.get("exhausted"))


def icrawler_filters(feeder_cls: Any, options: CrawlOptions) -> list[str]:
    """The type/size filters an engine understands, in its own dialect (icrawler's tables);
    values it does not take are left out."""
    rules = feeder_cls.get_filter(None).rules  # builds the table, uses no instance state
    parts = []
    for name, value in (("type", options.type_filter), ("size", options.size_filter)):
        if value is None or name not in rules:
            continue
        format_fn, choices = rules[name]
        if isinstance(choices, list) and value not in choices:
            continue
        try:
            parts.append(format_fn(value))
        except (ValueError, KeyError, AssertionError):
            continue
    return parts


def _queued_urls(parser: Parser, queue_timeout: float, stopped: Any) -> Iterator[str]:
    """Page URLs from the feeder until it is done or ``stopped()``; each is marked done."""
    while not stopped():
        try:
            url = parser.in_queue.get(timeout=queue_timeout)
        except queue.Empty:
            if parser.signal.get("feeder_exited"):
                return
            continue
        try:
            yield url
        finally:
            parser.in_queue.task_done()


def _hand_over(parser: Parser, task: dict[str, Any]) -> None:
    """Put a task on the downloaders' queue, waiting while it is full, until the crawl stops."""
    while not parser.signal.get("reach_max_num"):
        try:
            parser.output(task, timeout=0.2)
            return
        except queue.Full:
            continue


class StoppableFeed:
    """Put page URLs one by one, giving up as soon as the crawl has enough or ran dry.

    icrawler's feeders block on a full queue forever; when the parser stops early that thread
    would never end.
    """

    attempt: Attempt
    out_queue: queue.Queue
    signal: Any

    def _put(self, url: str) -> bool:
        while not _stopped(self.signal):
            try:
                # queue.Queue.put, not CachedQueue.put: a retried put must not be taken for a
                # duplicate page and dropped.
                queue.Queue.put(self.out_queue, url, True, 0.1)
            except queue.Full:
                continue
            self.attempt.count("pages_fed")
            return True
        return False


class EngineFeeder(StoppableFeed, Feeder):
    """Feeds an engine's page URLs (after its warm-up requests)."""

    def __init__(self, thread_num, signal, session, engine: Engine, attempt: Attempt):
        super().__init__(thread_num, signal, session)
        self.engine, self.attempt = engine, attempt

    def feed(self, query: str, max_num: int) -> None:
        try:
            self.engine.warm_up(self.session, query)
            for url in self.engine.page_urls(query, max_num):
                if not self._put(url):
                    return
        except Blocked as block:
            self.attempt.blocked(block)
            self.signal.set(exhausted=True)
        except requests.RequestException as exc:
            self.attempt.page_error(
                self.engine.base, f"warm-up failed: {type(exc).__name__}: {exc}"
            )


class EngineParser(Parser):
    """Fetches result pages (and the pages they lead to), reads them with the engine, and
    passes new candidates to the downloaders, numbered by rank. A block stops the attempt;
    two pages in a row with nothing new mean the engine ran dry."""

    def __init__(self, thread_num, signal, session, engine: Engine, attempt: Attempt):
        super().__init__(thread_num, signal, session)
        self.engine, self.attempt = engine, attempt
        self._emitted: set[str] = set()
        self._rank = 0
        self._empty_pages = 0
        self._rank_lock = threading.Lock()

    def worker_exec(self, queue_timeout=0.2, **kwargs):
        for url in _queued_urls(self, queue_timeout, lambda: _stopped(self.signal)):
            self._read_all(url)

    def _read_all(self, url: str) -> None:
        pending = [url]
        while pending and not _stopped(self.signal):
            page_url = pending.pop(0)
            try:
                self.engine.pace()
                response = fetch(self.session, page_url, self.engine.options)
            except Blocked as block:
                self.attempt.blocked(block)
                self._run_dry()
                return
            except requests.RequestException as exc:
                self.attempt.page_error(
                    page_url, f"result page failed: {type(exc).__name__}: {exc}"
                )
                continue
            self.attempt.page_done(response.url, response.status_code)
            try:
                page = self.engine.read(
                    response.content, response.status_code, response.url, response.headers
                )
            except Blocked as block:
                self.attempt.blocked(block)
                self._run_dry()
                return
            except PageError as exc:
                self.attempt.note(str(exc))
                log.warning("%s: %s (%s)", self.engine.name, exc, response.url)
                page = Page()
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                self.attempt.note(f"the {self.engine.name} parser failed: {exc!r}")
                log.warning("%s parser failed on %s: %r", self.engine.name, response.url, exc)
                page = Page()
            if not page.candidates and not self._rank and response.status_code == 200:
                self.attempt.note(f"a page with no results: {describe_page(response.content, 200)}")
            self._emit(page.candidates)
            pending.extend(page.follow)
            if self.engine.options.request_delay_s:
                time.sleep(self.engine.options.request_delay_s)

    def _emit(self, candidates: list[dict[str, Any]]) -> None:
        new = []
        with self._rank_lock:
            for task in candidates:
                if task["file_url"] in self._emitted:
                    continue
                self._emitted.add(task["file_url"])
                self._rank += 1
                new.append({**task, "rank": self._rank})
            self._empty_pages = 0 if new else self._empty_pages + 1
        for task in new:
            self.attempt.count("results")
            _hand_over(self, task)
        if self._empty_pages >= 2:
            self._run_dry()

    def _run_dry(self) -> None:
        self.signal.set(exhausted=True)
        # Pages already queued would be fetched for nothing; the feeder stops on the signal.
        with self.in_queue.mutex:
            self.in_queue.queue.clear()
            self.in_queue.not_full.notify_all()


class ListFeeder(StoppableFeed, Feeder):
    def __init__(self, thread_num, signal, session, attempt: Attempt):
        super().__init__(thread_num, signal, session)
        self.attempt = attempt

    def feed(self, url_list: list[str]):
        for url in url_list:
            if not self._put(url):
                return


class ListParser(Parser):
    """Passes URL-list entries straight to the downloader (icrawler's PseudoParser, with ranks
    and a stop that does not hang)."""

    def __init__(self, thread_num, signal, session, attempt: Attempt):
        super().__init__(thread_num, signal, session)
        self.attempt = attempt
        self._rank = 0

    def worker_exec(self, queue_timeout=0.2, **kwargs):
        stop = lambda: bool(self.signal.get("reach_max_num"))  # noqa: E731
        for url in _queued_urls(self, queue_timeout, stop):
            self._rank += 1
            self.attempt.count("results")
            _hand_over(self, {**candidate(url), "rank": self._rank})


class EngineCrawler(Crawler):
    """icrawler's Crawler without its logging.basicConfig (a library must not configure
    handlers) and with a faster wait loop and a time limit."""

    def set_logger(self, log_level=logging.INFO):
        self.logger = logging.getLogger("icrawler.crawler")

    def init_signal(self):
        super().init_signal()
        self.signal.set(exhausted=False)

    def run(
        self, feeder_kwargs: dict, parser_kwargs: dict, downloader_kwargs: dict, time_limit_s: float
    ) -> bool:
        """Start the threads and wait for the downloaders; False if the time limit hit."""
        self.signal.reset()
        self.feeder.start(**feeder_kwargs)
        self.parser.start(**parser_kwargs)
        self.downloader.start(**downloader_kwargs)
        deadline = time.monotonic() + time_limit_s
        finished = True
        while self.downloader.is_alive():
            if not self.feeder.is_alive():
                self.signal.set(feeder_exited=True)
            if not self.parser.is_alive():
                self.signal.set(parser_exited=True)
            if time.monotonic() > deadline and finished:
                finished = False
                self.signal.set(reach_max_num=True)  # threads wind down after their request
            time.sleep(0.05)
        return finished
