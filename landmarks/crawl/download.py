"""Atomic downloads: fetch into a staging file, verify the image decodes fully, and only then
hand it to the class run, which renames it into ``raw/<class>/`` with its provenance record.

A zero-byte body, an HTML page served as .jpg or a truncated image never lands in ``raw/``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import random
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import requests
from icrawler import ImageDownloader
from PIL import Image, UnidentifiedImageError

from landmarks import images
from landmarks.crawl.options import CrawlOptions

if TYPE_CHECKING:
    from landmarks.crawl.state import Attempt

log = logging.getLogger(__name__)

# Answers worth asking again after a pause; any other non-200 answer is final.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# Outcomes that a later refresh retries (the URL may work next week); the rest are final.
TRANSIENT = frozenset({"network", "server_error", "timeout"})


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


def backoff(options: CrawlOptions, attempt: int) -> float:
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
            time.sleep(backoff(options, attempt))
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


class AtomicDownloader(ImageDownloader):
    """icrawler downloader that never writes into raw/ directly: each image is fetched into a
    staging file, verified and handed to the class run, which renames it into raw/."""

    def __init__(
        self,
        thread_num,
        signal,
        session,
        storage,
        attempt: Attempt,
        slots: threading.BoundedSemaphore | None = None,
    ):
        super().__init__(thread_num, signal, session, storage)
        self.attempt = attempt
        # A source whose hosts take few parallel downloads (Commons: 2) shares these slots
        # with every other class crawled in this process.
        self.slots = slots or threading.BoundedSemaphore(max(1, thread_num))
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
        with self.slots:
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
