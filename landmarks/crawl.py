"""Crawl web image search engines (through icrawler) into the append-only raw store.

How one class is crawled (:func:`crawl_class`):

* Queries: the catalog's queries for the class plus its English and local-language names.
* Engines: each query asks the engines in the configured order (Google, Bing, Baidu; none needs
  an API key); the next engine is asked whenever the previous one left the query short:
  nothing at all, an error page, or only URLs we already hold. A URL list
  (``class url`` lines) is fetched first, through the same downloader.
* icrawler's own feeder -> parser -> downloader threads do the work. The feeders here build the
  same search URLs as icrawler's but on a configurable base URL (a mirror, a proxy, or the
  local server the tests run), and can stop early once an engine runs dry.
* Atomic downloads: the body streams into a staging file beside ``raw/``, must decode fully as
  an image of the minimum size, and only then is renamed into ``raw/<class>/`` with a
  provenance record (engine, query, URL, result rank, time, sha256, bytes, pixel size, refresh).
  A zero-byte body, an HTML page served as .jpg or a truncated image never lands in ``raw/``.
* Incremental: URLs already held, already found to duplicate a held image, or already found not
  to be a usable image are never fetched again; ``raw/crawl-urls.jsonl`` says why for each URL
  that did not become a file. Network errors, timeouts and 5xx answers are retried with
  exponential backoff and jitter, and tried again by the next refresh.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import logging
import os
import queue
import random
import re
import socket
import tempfile
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus, urlencode, urlparse, urlsplit

import requests
from bs4 import BeautifulSoup
from icrawler import Crawler, Feeder, ImageDownloader, Parser
from icrawler.builtin.baidu import BaiduFeeder, BaiduParser
from icrawler.builtin.bing import BingFeeder, BingParser
from icrawler.builtin.google import GoogleFeeder, GoogleParser
from PIL import Image, UnidentifiedImageError

from landmarks import images
from landmarks.catalog import Landmark
from landmarks.ingest import RawStore, new_refresh_id, now_iso
from landmarks.storage import Layout, append_jsonl, read_jsonl

log = logging.getLogger(__name__)

ENGINES = ("google", "bing", "baidu")
URL_LIST = "urls"  # the engine name recorded for images that came from a URL list
DEFAULT_BASE_URLS = {
    "google": "https://www.google.com",
    "bing": "https://www.bing.com",
    "baidu": "https://image.baidu.com",
}
# Answers worth asking again after a pause; any other non-200 answer is final.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# Outcomes that a later refresh retries (the URL may work next week); the rest are final.
TRANSIENT = frozenset({"network", "server_error", "timeout"})
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


class NetworkUnavailable(RuntimeError):
    """No engine host can be reached: say how to run offline."""


class EmptyCrawl(RuntimeError):
    """A class that had no images ended its crawl with none; ``result`` says what each engine
    answered."""

    def __init__(self, message: str, result: ClassCrawl | None = None) -> None:
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class CrawlOptions:
    engines: tuple[str, ...] = ("bing", "google", "baidu")
    max_per_class: int = 400
    min_size: int = 100
    downloader_threads: int = 4
    timeout_s: float = 10.0
    connectivity_timeout_s: float = 3.0
    request_delay_s: float = 0.25
    max_retries: int = 3
    backoff_s: float = 1.0
    max_bytes: int = 30_000_000
    max_pixels: int = 50_000_000
    type_filter: str | None = "photo"
    size_filter: str | None = None
    license_filter: str | None = None
    endpoints: tuple[tuple[str, str], ...] = ()
    url_list: Path | None = None
    query_time_limit_s: float = 600.0

    def base_url(self, engine: str) -> str:
        return dict(self.endpoints).get(engine, DEFAULT_BASE_URLS[engine]).rstrip("/")

    def endpoint_map(self) -> dict[str, str]:
        return {engine: self.base_url(engine) for engine in self.engines}


@dataclass(frozen=True)
class AttemptReport:
    """What one engine gave for one query."""

    engine: str
    query: str
    wanted: int
    pages: int = 0
    pages_failed: int = 0
    results: int = 0
    known: int = 0
    added: int = 0
    duplicates: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    note: str = ""

    def summary(self) -> str:
        parts = [f"{self.results} results", f"{self.added} new"]
        if self.known:
            parts.append(f"{self.known} known")
        if self.duplicates:
            parts.append(f"{self.duplicates} duplicates")
        if self.rejected:
            parts.append(
                "rejected " + ", ".join(f"{k} {v}" for k, v in sorted(self.rejected.items()))
            )
        if self.pages_failed:
            parts.append(f"{self.pages_failed} of {self.pages} result pages failed")
        text = ", ".join(parts)
        return f"{text} ({self.note})" if self.note else text


@dataclass(frozen=True)
class ClassCrawl:
    class_name: str
    refresh_id: str
    had_before: int
    added: int
    attempts: tuple[AttemptReport, ...] = ()

    @property
    def rejected(self) -> int:
        return sum(sum(a.rejected.values()) for a in self.attempts)

    @property
    def per_engine(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for a in self.attempts:
            counts[a.engine] = counts.get(a.engine, 0) + a.added
        return counts


@dataclass(frozen=True)
class CatalogCrawl:
    refresh_id: str
    results: tuple[ClassCrawl, ...]
    failed: tuple[str, ...]  # classes that had no images and still have none

    @property
    def added(self) -> int:
        return sum(r.added for r in self.results)

    @property
    def per_class(self) -> dict[str, int]:
        return {r.class_name: r.added for r in self.results}


@dataclass(frozen=True)
class Downloaded:
    """A verified image in a staging file, not yet in raw/."""

    path: Path
    sha256: str
    num_bytes: int
    width: int
    height: int
    format: str
    content_type: str


@dataclass(frozen=True)
class Rejected:
    reason: str
    detail: str


# ---------------------------------------------------------------------------------------------
# Network check


def _host_port(base_url: str) -> tuple[str, int]:
    parts = urlsplit(base_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.hostname or "", port


def _connect(base_url: str, timeout: float) -> None:
    with socket.create_connection(_host_port(base_url), timeout=timeout):
        pass


def check_network(
    engines: tuple[str, ...], timeout: float, endpoints: dict[str, str] | None = None
) -> None:
    """Raise :class:`NetworkUnavailable` quickly when no engine host answers.

    ``endpoints`` maps an engine to the base URL it is crawled from (default: the engine's own
    site).
    """
    bases = {e: (endpoints or {}).get(e, DEFAULT_BASE_URLS[e]) for e in engines}
    errors = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(engines))) as pool:
        futures = {pool.submit(_connect, bases[e], timeout): e for e in engines}
        done, _ = concurrent.futures.wait(futures, timeout=timeout + 1)
        for future, engine in futures.items():
            if future in done and future.exception() is None:
                return
            exc = future.exception() if future in done else TimeoutError("no answer")
            errors.append(f"{engine} ({urlsplit(bases[engine]).netloc}): {exc}")
    raise NetworkUnavailable(
        "cannot reach any image search engine: "
        + "; ".join(errors)
        + ". To run offline, import a local folder laid out as DIR/<class>/<images>: "
        "`landmarks run --source DIR` or `make run SOURCE=DIR`."
    )


# ---------------------------------------------------------------------------------------------
# Download and verify one image


def _backoff(options: CrawlOptions, attempt: int) -> float:
    """Exponential backoff with jitter, so threads that failed together do not retry together."""
    return min(60.0, options.backoff_s * 2 ** (attempt - 1)) * random.uniform(0.5, 1.5)


def _sniff(path: Path, content_type: str) -> str:
    with path.open("rb") as fh:
        head = fh.read(512)
    lowered = head.lstrip().lower()
    if lowered.startswith((b"<!doctype html", b"<html")) or b"<html" in lowered[:200]:
        return f"an HTML page (Content-Type {content_type or 'unset'})"
    if lowered.startswith((b"{", b"[")):
        return f"JSON or text (Content-Type {content_type or 'unset'})"
    return (
        f"no image decoder recognises it (first bytes {head[:12]!r}, Content-Type "
        f"{content_type or 'unset'})"
    )


def verify_image(
    path: Path, min_size: int, max_pixels: int, content_type: str = ""
) -> tuple[str, int, int]:
    """Decode ``path`` fully; return (format, width, height).

    Raises:
        images.ImageRejected: empty, not an image (an HTML page...), truncated, unreadable,
            too large (checked before decoding) or smaller than ``min_size`` on a side.
    """
    if path.stat().st_size == 0:
        raise images.ImageRejected(images.EMPTY, "zero-byte body")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
    except UnidentifiedImageError as exc:
        raise images.ImageRejected(images.NOT_AN_IMAGE, _sniff(path, content_type)) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise images.ImageRejected(images.UNREADABLE, f"cannot open: {exc}") from exc
    with im:
        width, height = im.size
        fmt = im.format or "unknown"
        if width * height > max_pixels:
            raise images.ImageRejected(
                images.TOO_LARGE, f"{width}x{height} px > limit {max_pixels}"
            )
        try:
            im.load()
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            text = str(exc).lower()
            reason = (
                images.TRUNCATED
                if "truncat" in text or isinstance(exc, EOFError)
                else images.UNREADABLE
            )
            raise images.ImageRejected(reason, f"cannot decode: {exc}") from exc
    if min(width, height) < min_size:
        raise images.ImageRejected(images.TOO_SMALL, f"{width}x{height}, shorter side < {min_size}")
    return fmt, width, height


class _SlowBody(Exception):
    pass


def download_image(
    session: requests.Session,
    url: str,
    staging_dir: Path,
    options: CrawlOptions,
    stop: Callable[[], bool] | None = None,
) -> Downloaded | Rejected:
    """Fetch ``url`` into a staging file and verify it decodes as an image.

    Network errors, timeouts and 408/429/5xx answers are retried (``max_retries`` times, with
    exponential backoff and jitter); each attempt must finish within ``4 * timeout_s``. The
    caller owns the returned staging file (it renames it into raw/ or deletes it).
    """
    last = ""
    reason = "network"
    for attempt in range(options.max_retries + 1):
        if stop is not None and stop():
            return Rejected("cancelled", "the crawl had enough images")
        if attempt:
            time.sleep(_backoff(options, attempt))
        elif options.request_delay_s:
            time.sleep(options.request_delay_s)
        tmp: Path | None = None
        try:
            with session.get(url, timeout=options.timeout_s, stream=True) as response:
                if response.status_code in RETRY_STATUSES:
                    reason, last = "server_error", f"HTTP {response.status_code}"
                    continue
                if response.status_code != 200:
                    return Rejected("http_error", f"HTTP {response.status_code}")
                length = response.headers.get("Content-Length", "")
                if length.isdigit() and int(length) > options.max_bytes:
                    return Rejected(images.TOO_LARGE, f"{length} bytes > {options.max_bytes}")
                content_type = response.headers.get("Content-Type", "")
                fd, name = tempfile.mkstemp(dir=staging_dir, prefix=".dl-", suffix=".part")
                tmp = Path(name)
                digest = hashlib.sha256()
                size = 0
                deadline = time.monotonic() + 4 * options.timeout_s
                with os.fdopen(fd, "wb") as fh:
                    for chunk in response.iter_content(chunk_size=1 << 16):
                        if time.monotonic() > deadline:
                            raise _SlowBody(f"body not complete after {4 * options.timeout_s}s")
                        size += len(chunk)
                        if size > options.max_bytes:
                            tmp.unlink(missing_ok=True)
                            return Rejected(images.TOO_LARGE, f"over {options.max_bytes} bytes")
                        digest.update(chunk)
                        fh.write(chunk)
                    fh.flush()
                    os.fsync(fh.fileno())
        except (requests.Timeout, _SlowBody) as exc:
            reason, last = "timeout", f"{type(exc).__name__}: {exc}"
            if tmp is not None:
                tmp.unlink(missing_ok=True)
            continue
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            reason, last = "network", f"{type(exc).__name__}: {exc}"
            if tmp is not None:
                tmp.unlink(missing_ok=True)
            continue
        except requests.RequestException as exc:  # an invalid URL and the like: final
            return Rejected("bad_url", f"{type(exc).__name__}: {exc}")
        assert tmp is not None
        try:
            fmt, width, height = verify_image(
                tmp, options.min_size, options.max_pixels, content_type
            )
        except images.ImageRejected as exc:
            tmp.unlink(missing_ok=True)
            return Rejected(exc.reason, exc.detail)
        return Downloaded(tmp, digest.hexdigest(), size, width, height, fmt, content_type)
    return Rejected(reason, f"{last} after {options.max_retries + 1} tries")


# ---------------------------------------------------------------------------------------------
# What a page held (for the log when an engine answers with nothing)

_PAGE_HINTS = (
    ("unusual traffic", "the engine suspects a robot (rate limit or captcha)"),
    ("captcha", "a captcha page"),
    ("before you continue", "a cookie-consent page"),
    ("consent", "a cookie-consent page"),
    ("enable javascript", "a page that needs JavaScript"),
)


def describe_page(content: bytes, status: int = 200, url: str = "") -> str:
    """One line on what a result page held: size, title, scripts, images, a hint, a snippet."""
    text = content.decode("utf-8", "ignore")
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


# ---------------------------------------------------------------------------------------------
# icrawler components: feeders on a configurable base URL, tracking parsers, an atomic
# downloader


def _stopped(signal: Any) -> bool:
    return bool(signal.get("reach_max_num") or signal.get("exhausted"))


class _StoppableFeed:
    """Put page URLs one by one, giving up as soon as the crawl has enough or ran dry.

    icrawler's feeders block on a full queue forever; when the parser stops early that thread
    would never end.
    """

    attempt: _Attempt
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


class _GoogleFeeder(_StoppableFeed, GoogleFeeder):
    def __init__(self, thread_num, signal, session, base_url: str, attempt: _Attempt):
        super().__init__(thread_num, signal, session)
        self.base_url, self.attempt = base_url, attempt

    def feed(self, keyword, offset, max_num, language=None, filters=None):
        filter_str = self.get_filter().apply(filters, sep=",")
        for i in range(offset, offset + max_num, 100):
            params = {"q": keyword, "ijn": i // 100, "start": i, "tbs": filter_str, "tbm": "isch"}
            if language:
                params["lr"] = "lang_" + language
            if not self._put(f"{self.base_url}/search?{urlencode(params)}"):
                return


class _BingFeeder(_StoppableFeed, BingFeeder):
    def __init__(self, thread_num, signal, session, base_url: str, attempt: _Attempt):
        super().__init__(thread_num, signal, session)
        self.base_url, self.attempt = base_url, attempt

    def feed(self, keyword, offset, max_num, filters=None):
        filter_str = self.get_filter().apply(filters)
        # qft stays unencoded as icrawler sends it: Bing reads its '+' as separators.
        qft = "&qft=" + filter_str if filter_str else ""
        for i in range(offset, offset + max_num, 20):
            url = f"{self.base_url}/images/async?q={quote_plus(keyword)}&first={i}{qft}"
            if not self._put(url):
                return


class _BaiduFeeder(_StoppableFeed, BaiduFeeder):
    def __init__(self, thread_num, signal, session, base_url: str, attempt: _Attempt):
        super().__init__(thread_num, signal, session)
        self.base_url, self.attempt = base_url, attempt

    def feed(self, keyword, offset, max_num, filters=None):
        filter_str = self.get_filter().apply(filters, sep="&")
        for i in range(offset, offset + max_num, 30):
            url = (
                f"{self.base_url}/search/acjson?tn=resultjson_com&ipn=rj"
                f"&word={quote(keyword)}&pn={i}&rn=30"
            )
            if filter_str:
                url += "&" + filter_str
            if not self._put(url):
                return


class _ListFeeder(_StoppableFeed, Feeder):
    def __init__(self, thread_num, signal, session, attempt: _Attempt):
        super().__init__(thread_num, signal, session)
        self.attempt = attempt

    def feed(self, url_list: list[str]):
        for url in url_list:
            if not self._put(url):
                return


class SafeGoogleParser(GoogleParser):
    """icrawler's Google parser returns None on pages it does not understand, which kills its
    thread (upstream issues #107, #135); this one returns an empty list and logs what the page
    held (a consent page, a captcha, a changed layout...)."""

    def parse(self, response: Any, **kwargs: Any) -> list[dict[str, str]]:
        result = super().parse(response)
        if result is None:
            log.log(
                self._empty_page_level(),
                "google page held no image URLs the parser knows: %s",
                describe_page(
                    getattr(response, "content", b""),
                    getattr(response, "status_code", 0),
                    getattr(response, "url", ""),
                ),
            )
            return []
        return result

    def _empty_page_level(self) -> int:
        return logging.WARNING


class _TrackingParser:
    """Mixin for an icrawler parser: retries 408/429/5xx pages with backoff, counts pages and
    results, numbers results by rank, drops a URL seen earlier in the same crawl, and says
    "exhausted" after two pages in a row brought nothing new."""

    attempt: _Attempt
    signal: Any
    session: Any
    in_queue: queue.Queue
    lock: threading.Lock

    def _setup(self, attempt: _Attempt) -> None:
        self.attempt = attempt
        self._emitted: set[str] = set()
        self._rank = 0
        self._empty_pages = 0

    def parse(self, response: Any, **kwargs: Any) -> list[dict[str, Any]]:
        options = self.attempt.options
        if _stopped(self.signal):
            return []
        tries = 0
        while response.status_code in RETRY_STATUSES and tries < options.max_retries:
            tries += 1
            time.sleep(_backoff(options, tries))
            try:
                response = self.session.get(response.url, timeout=options.timeout_s)
            except requests.RequestException:
                break  # _PageSession noted why
        self.attempt.page_done(response.url, response.status_code)
        tasks: list[dict[str, Any]] = []
        if response.status_code != 200:
            self.attempt.note(f"result page answered HTTP {response.status_code}")
            log.warning(
                "%s answered HTTP %d for %s",
                self.attempt.engine,
                response.status_code,
                response.url,
            )
        else:
            try:
                tasks = [
                    t
                    for t in (super().parse(response, **kwargs) or [])  # type: ignore[misc]
                    if isinstance(t, dict) and t.get("file_url")
                ]
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                # icrawler's parsers index into the page blindly (Baidu's data key...); an
                # unexpected page must cost this page, not the parser thread.
                self.attempt.note(f"the {self.attempt.engine} parser failed: {exc!r}")
                log.warning("%s parser failed on %s: %r", self.attempt.engine, response.url, exc)
            if not tasks and not self._rank:
                # Nothing at all so far: worth a note in the report. An empty page after
                # results is just the end of the list (logged at INFO).
                page = describe_page(response.content, response.status_code)
                self.attempt.note(f"a page with no results: {page}")
            if not tasks and not isinstance(self, SafeGoogleParser):  # that one logs itself
                log.log(
                    self._empty_page_level(),
                    "%s page held no image results: %s: %s",
                    self.attempt.engine,
                    response.url,
                    describe_page(response.content, response.status_code),
                )
        new = [t for t in tasks if t["file_url"] not in self._emitted]
        self._empty_pages = 0 if new else self._empty_pages + 1
        if self._empty_pages >= 2:
            self._run_dry()
        if options.request_delay_s:
            time.sleep(options.request_delay_s)
        return new

    def _empty_page_level(self) -> int:
        return logging.INFO if self._rank else logging.WARNING

    def _run_dry(self) -> None:
        self.signal.set(exhausted=True)
        # Pages already queued would be fetched for nothing; the feeder stops on the signal.
        with self.in_queue.mutex:
            self.in_queue.queue.clear()
            self.in_queue.not_full.notify_all()

    def output(self, task: dict[str, Any], block: bool = True, timeout: float | None = None):
        # The parser calls output again for the same dict when the queue was full: rank once.
        if "rank" not in task:
            with self.lock:
                if task["file_url"] in self._emitted:
                    return
                self._emitted.add(task["file_url"])
                self._rank += 1
                task["rank"] = self._rank
            self.attempt.count("results")
        super().output(task, block, timeout)  # type: ignore[misc]


def _tracking(parser_cls: type) -> type:
    def __init__(self, thread_num, signal, session, attempt):
        parser_cls.__init__(self, thread_num, signal, session)
        self._setup(attempt)

    return type(
        f"Tracking{parser_cls.__name__}", (_TrackingParser, parser_cls), {"__init__": __init__}
    )


class _ListParser(Parser):
    """Passes URL-list entries straight to the downloader (icrawler's PseudoParser, with ranks
    and a stop that does not hang)."""

    def __init__(self, thread_num, signal, session, attempt: _Attempt):
        super().__init__(thread_num, signal, session)
        self.attempt = attempt
        self._rank = 0

    def worker_exec(self, queue_timeout=0.2, **kwargs):
        while not self.signal.get("reach_max_num"):
            try:
                url = self.in_queue.get(timeout=queue_timeout)
            except queue.Empty:
                if self.signal.get("feeder_exited"):
                    return
                continue
            self._rank += 1
            self.attempt.count("results")
            task = {"file_url": url, "rank": self._rank}
            while not self.signal.get("reach_max_num"):
                try:
                    self.output(task, timeout=0.2)
                    break
                except queue.Full:
                    continue


class AtomicDownloader(ImageDownloader):
    """icrawler downloader that never writes into raw/ directly: each image is fetched into a
    staging file, verified and handed to the class run, which renames it into raw/."""

    def __init__(self, thread_num, signal, session, storage, attempt: _Attempt):
        super().__init__(thread_num, signal, session, storage)
        self.attempt = attempt
        # Our own session: the crawler's records page errors for the report.
        self.http = requests.Session()
        self.http.headers.update(session.headers)
        adapter = requests.adapters.HTTPAdapter(pool_maxsize=max(10, thread_num))
        self.http.mount("http://", adapter)
        self.http.mount("https://", adapter)

    def worker_exec(
        self,
        max_num,
        default_ext="jpg",
        queue_timeout=0.2,
        req_timeout=5,
        max_idle_time=None,
        **kwargs,
    ):
        # icrawler's loop leaves as soon as its queue is empty once anything was fetched, even
        # while the parser is still reading the next page; this one waits for the parser.
        self.max_num = max_num
        while not self.signal.get("reach_max_num"):
            try:
                task = self.in_queue.get(timeout=queue_timeout)
            except queue.Empty:
                if self.signal.get("parser_exited"):
                    return
                continue
            try:
                self.download(task)
            except Exception:  # a thread that dies silently would lose the rest of the queue
                log.exception("download of %s failed unexpectedly", task.get("file_url"))
                self.attempt.reject(task.get("file_url", ""), Rejected("error", "see the log"))
            finally:
                self.in_queue.task_done()

    def download(self, task, default_ext="jpg", timeout=5, max_retry=3, overwrite=False, **kw):
        url = task["file_url"]
        if not self.attempt.claim(url):
            return False
        outcome = download_image(
            self.http,
            url,
            self.attempt.run.staging_dir,
            self.attempt.options,
            stop=lambda: bool(self.signal.get("reach_max_num")),
        )
        if isinstance(outcome, Rejected):
            self.attempt.reject(url, outcome)
            return False
        return self.attempt.commit(outcome, task)


class _PageSession:
    """Wraps the crawler's session to remember why a result page could not be fetched
    (icrawler's parser only logs it)."""

    def __init__(self, inner: Any, attempt: _Attempt) -> None:
        self._inner, self._attempt = inner, attempt

    def get(self, url: str, **kwargs: Any) -> Any:
        try:
            return self._inner.get(url, **kwargs)
        except requests.RequestException as exc:
            self._attempt.page_error(url, f"result page failed: {type(exc).__name__}: {exc}")
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _EngineCrawler(Crawler):
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


# ---------------------------------------------------------------------------------------------
# One class run: the shared state of every (engine, query) attempt for one class


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


class _ClassRun:
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


class _Attempt:
    """Counters and decisions of one (engine, query) crawl; thread-safe."""

    def __init__(self, run: _ClassRun, engine: str, query: str, wanted: int) -> None:
        self.run, self.engine, self.query, self.wanted = run, engine, query, wanted
        self.options = run.options
        self.signal: Any = None
        self.counts: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.notes: list[str] = []
        self.pages_done: set[str] = set()
        self.page_errors: set[str] = set()
        self.added = 0
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
        if self.engine != URL_LIST and fed and not self.pages_done:
            notes.insert(0, f"none of {fed} result pages could be fetched")
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
        )


# ---------------------------------------------------------------------------------------------
# Engines and filters

_ENGINE_PARTS: dict[str, tuple[Any, type]] = {
    "google": (_GoogleFeeder, SafeGoogleParser),
    "bing": (_BingFeeder, BingParser),
    "baidu": (_BaiduFeeder, BaiduParser),
}


def engine_filters(engine: str, options: CrawlOptions) -> dict[str, str]:
    """The type/size/licence filters this engine understands; the others are left out (logged),
    since each engine names them differently (Baidu has no licence filter, for instance)."""
    wanted = {
        "type": options.type_filter,
        "size": options.size_filter,
        "license": options.license_filter,
    }
    # get_filter builds the engine's rule table and uses no instance state.
    rules = _ENGINE_PARTS[engine][0].get_filter(None).rules
    kept: dict[str, str] = {}
    for name, value in wanted.items():
        if value is None:
            continue
        if name not in rules:
            log.info("%s has no %s filter; %r not applied", engine, name, value)
            continue
        format_fn, choices = rules[name]
        try:
            if isinstance(choices, list) and value not in choices:
                raise ValueError(f"choose one of {', '.join(choices)}")
            format_fn(value)
        except (ValueError, KeyError, AssertionError) as exc:
            log.info("%s does not take %s=%r (%s); not applied", engine, name, value, exc)
            continue
        kept[name] = value
    return kept


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


def read_url_list(path: Path) -> dict[str, list[str]]:
    """Read ``class url`` lines (space, tab or comma between; ``#`` comments) -> class -> URLs."""
    per_class: dict[str, list[str]] = {}
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = re.split(r"[\s,]+", line, maxsplit=1)
        if len(parts) != 2 or not urlsplit(parts[1].strip()).scheme.startswith("http"):
            raise ValueError(f"{path}:{n}: expected '<class> <http(s) URL>', got {line!r}")
        per_class.setdefault(parts[0], []).append(parts[1].strip())
    return per_class


def _run_attempt(
    run: _ClassRun,
    engine: str,
    query: str,
    wanted: int,
    urls: list[str] | None = None,
    downloader_cls: type | None = None,
) -> AttemptReport:
    options = run.options
    attempt = _Attempt(run, engine, query, wanted)
    feeder_cls: type
    parser_cls: type
    if engine == URL_LIST:
        feeder_cls, parser_cls = _ListFeeder, _ListParser
        feeder_args: dict[str, Any] = {"attempt": attempt}
        feeder_kwargs: dict[str, Any] = {"url_list": urls or []}
    else:
        feeder_cls, base_parser = _ENGINE_PARTS[engine]
        parser_cls = _tracking(base_parser)
        feeder_args = {"base_url": options.base_url(engine), "attempt": attempt}
        # Known URLs come back among the results: look that much further down the list.
        num_results = min(1000, wanted * 2 + len(run.known))
        feeder_kwargs = {
            "keyword": query,
            "offset": 0,
            "max_num": num_results,
            "filters": engine_filters(engine, options) or None,
        }
    crawler = _EngineCrawler(
        feeder_cls=feeder_cls,
        parser_cls=parser_cls,
        downloader_cls=downloader_cls or AtomicDownloader,  # another only for benchmarks
        downloader_threads=options.downloader_threads,
        storage={"backend": "FileSystem", "root_dir": str(run.staging_dir)},
        extra_feeder_args=feeder_args,
        extra_parser_args={"attempt": attempt},
        extra_downloader_args={"attempt": attempt},
    )
    crawler.parser.session = _PageSession(crawler.session, attempt)
    attempt.signal = crawler.signal
    start = time.monotonic()
    finished = crawler.run(
        feeder_kwargs,
        {
            "queue_timeout": 0.2,
            "req_timeout": options.timeout_s,
            "max_retry": options.max_retries + 1,
        },
        {"max_num": wanted, "queue_timeout": 0.2, "req_timeout": options.timeout_s},
        options.query_time_limit_s,
    )
    if not finished:
        attempt.note(f"stopped at the {options.query_time_limit_s:.0f}s time limit")
    report = attempt.report(time.monotonic() - start)
    log.info("%s %s %r: %s", run.landmark.name, engine, query, report.summary())
    return report


def crawl_class(
    landmark: Landmark,
    layout: Layout,
    options: CrawlOptions,
    refresh_id: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ClassCrawl:
    """Crawl one landmark until ``max_per_class`` new images are in raw/ or the engines run dry.

    Each query asks for its share of what is still missing, engine after engine in order.

    Raises:
        EmptyCrawl: the class had no image before and still has none; the message says what
            each engine answered.
    """
    run = _ClassRun(landmark, layout, options, refresh_id or new_refresh_id(), progress)
    attempts: list[AttemptReport] = []
    if options.url_list is not None:
        urls = read_url_list(options.url_list).get(landmark.name, [])
        if urls:
            attempts.append(
                _run_attempt(
                    run,
                    URL_LIST,
                    f"url list {Path(options.url_list).name}",
                    min(len(urls), run.remaining),
                    urls,
                )
            )
    queries = queries_for(landmark) if options.engines else []
    for i, query in enumerate(queries):
        if run.remaining <= 0:
            break
        # An even share of what is missing, so a short query leaves more for the next one.
        share = -(-run.remaining // (len(queries) - i))
        got = 0
        for engine in options.engines:
            wanted = min(share - got, run.remaining)
            if wanted <= 0:
                break
            report = _run_attempt(run, engine, query, wanted)
            attempts.append(report)
            got += report.added
            if report.added < wanted and engine != options.engines[-1]:
                log.warning(
                    "%s gave %d of %d new images for %r (%s); asking the next engine",
                    engine,
                    report.added,
                    wanted,
                    query,
                    report.summary(),
                )
    with contextlib.suppress(OSError):  # leave no empty staging folders behind
        run.staging_dir.rmdir()
        run.staging_dir.parent.rmdir()
    if progress is not None:
        progress(options.max_per_class, options.max_per_class)
    result = ClassCrawl(landmark.name, run.refresh_id, run.had_before, run.added, tuple(attempts))
    if run.had_before == 0 and run.added == 0:
        raise EmptyCrawl(empty_message(result), result)
    if run.added == 0:
        log.warning("%s: no new images this time (%d held)", landmark.name, run.had_before)
    return result


def empty_message(result: ClassCrawl) -> str:
    lines = "; ".join(f"{a.engine} {a.query!r}: {a.summary()}" for a in result.attempts)
    return (
        f"{result.class_name}: the crawl found no image at all and the class has none: "
        f"{lines or 'no engine or URL list was asked'}. What to do: put another engine first "
        "(--engine), check the class's queries in the catalog, lower --min-size, or import "
        "photos with --source DIR."
    )


def crawl_catalog(
    landmarks: Iterable[Landmark],
    layout: Layout,
    options: CrawlOptions,
    progress: Callable[[int, int], None] | None = None,
    refresh_id: str | None = None,
    check_network_first: bool = True,
) -> CatalogCrawl:
    """Crawl every landmark in turn (the refresh flow crawls classes as parallel tasks).

    A class that ends with no image at all is reported in ``failed``; the others carry on.

    Raises:
        NetworkUnavailable: no engine host answers (checked first, in seconds).
    """
    landmarks = list(landmarks)
    if options.engines and check_network_first:
        check_network(options.engines, options.connectivity_timeout_s, options.endpoint_map())
    if options.url_list is not None:
        unknown = set(read_url_list(options.url_list)) - {lm.name for lm in landmarks}
        if unknown:
            log.warning(
                "URL list classes not in the catalog (ignored): %s", ", ".join(sorted(unknown))
            )
    refresh_id = refresh_id or new_refresh_id()
    results: list[ClassCrawl] = []
    failed: list[str] = []
    total = len(landmarks) * options.max_per_class
    for i, landmark in enumerate(landmarks):
        offset = i * options.max_per_class

        def class_progress(done: int, _total: int, offset: int = offset) -> None:
            if progress is not None:
                progress(offset + done, total)

        try:
            results.append(crawl_class(landmark, layout, options, refresh_id, class_progress))
        except EmptyCrawl as exc:
            log.error("%s", exc)
            failed.append(landmark.name)
            if exc.result is not None:
                results.append(exc.result)
    return CatalogCrawl(refresh_id, tuple(results), tuple(failed))


def engine_table(results: Iterable[ClassCrawl], failed: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Rows of new images per class and engine (for the CLI and the Prefect table artifact)."""
    results = list(results)
    failed = set(failed)
    engines = sorted({a.engine for r in results for a in r.attempts})
    rows = []
    for r in sorted(results, key=lambda r: r.class_name):
        per_engine = r.per_engine
        rows.append(
            {
                "class": r.class_name,
                **{e: per_engine.get(e, 0) for e in engines},
                "new": r.added,
                "held before": r.had_before,
                "rejected": r.rejected,
                "status": "FAILED: no images" if r.class_name in failed else "ok",
            }
        )
    return rows


def attempt_rows(result: ClassCrawl) -> list[dict[str, Any]]:
    """One row per (engine, query) attempt of a class."""
    return [
        {
            "engine": a.engine,
            "query": a.query,
            "wanted": a.wanted,
            "results": a.results,
            "new": a.added,
            "known": a.known,
            "duplicates": a.duplicates,
            "rejected": ", ".join(f"{k} {v}" for k, v in sorted(a.rejected.items())) or "-",
            "seconds": a.seconds,
            "note": a.note or "-",
        }
        for a in result.attempts
    ]
