"""Crawl web image search engines (through icrawler) into the raw store.

Each (class, query) is fetched from the first engine in the configured order that yields
images; downloads land in a staging folder, are checked to decode as an image, and only
then enter ``raw/`` (see :class:`landmarks.ingest.RawStore`). Known URLs are never
downloaded again.
"""

from __future__ import annotations

import concurrent.futures
import logging
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from PIL import Image, UnidentifiedImageError

from landmarks.catalog import Landmark
from landmarks.ingest import IngestResult, RawStore, new_refresh_id, now_iso
from landmarks.storage import Layout

log = logging.getLogger(__name__)

ENGINE_HOSTS = {
    "google": "www.google.com",
    "bing": "www.bing.com",
    "baidu": "image.baidu.com",
}


class NetworkUnavailable(RuntimeError):
    """No engine host can be reached: say how to run offline."""


@dataclass(frozen=True)
class CrawlOptions:
    engines: tuple[str, ...] = ("bing", "google")
    max_per_class: int = 400
    min_size: int = 100
    downloader_threads: int = 4
    timeout_s: float = 10.0
    connectivity_timeout_s: float = 3.0


@dataclass
class ClassCrawl:
    class_name: str
    added: int = 0
    rejected: int = 0
    per_engine: dict[str, int] = field(default_factory=dict)


def _resolve_and_connect(host: str, timeout: float) -> None:
    with socket.create_connection((host, 443), timeout=timeout):
        pass


def check_network(engines: tuple[str, ...], timeout: float) -> None:
    """Raise :class:`NetworkUnavailable` quickly when no engine host answers."""
    errors = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(engines))) as pool:
        futures = {pool.submit(_resolve_and_connect, ENGINE_HOSTS[e], timeout): e for e in engines}
        done, _ = concurrent.futures.wait(futures, timeout=timeout + 1)
        for future, engine in futures.items():
            if future in done and future.exception() is None:
                return
            exc = future.exception() if future in done else TimeoutError("no answer")
            errors.append(f"{engine} ({ENGINE_HOSTS[engine]}): {exc}")
    raise NetworkUnavailable(
        "cannot reach any image search engine: "
        + "; ".join(errors)
        + ". To run offline, import a local folder laid out as DIR/<class>/<images>: "
        "`landmarks run --source DIR` or `make run SOURCE=DIR`."
    )


def _icrawler_classes(engine: str) -> tuple[type, type | None, type]:
    from icrawler import ImageDownloader
    from icrawler.builtin import BaiduImageCrawler, BingImageCrawler, GoogleImageCrawler
    from icrawler.builtin.google import GoogleParser

    class SafeGoogleParser(GoogleParser):
        """Google's parser returns None on pages it does not understand; that kills its thread."""

        def parse(self, response: Any) -> list[dict[str, str]]:
            result = super().parse(response)
            if result is None:
                log.warning(
                    "google page %s held no image URLs the parser knows (%d bytes)",
                    getattr(response, "url", "?"),
                    len(getattr(response, "content", b"")),
                )
                return []
            return result

    class TrackingDownloader(ImageDownloader):
        """Skips URLs the raw store holds and remembers which file came from which URL."""

        known_urls: set[str] = set()
        fetched: list[dict[str, Any]]

        def download(self, task, default_ext, timeout=5, max_retry=3, overwrite=False, **kw):
            if task["file_url"] in self.known_urls:
                task["success"] = False
                task["filename"] = None
                return
            super().download(task, default_ext, timeout, max_retry, overwrite, **kw)

        def process_meta(self, task):
            if task.get("success") and task.get("filename"):
                self.fetched.append({"filename": task["filename"], "url": task["file_url"]})

    crawlers = {
        "google": (GoogleImageCrawler, SafeGoogleParser),
        "bing": (BingImageCrawler, None),
        "baidu": (BaiduImageCrawler, None),
    }
    crawler_cls, parser_cls = crawlers[engine]
    return crawler_cls, parser_cls, TrackingDownloader


def fetch_query(
    engine: str,
    query: str,
    max_num: int,
    staging_dir: Path,
    known_urls: set[str],
    options: CrawlOptions,
    crawler_kwargs: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Run one icrawler crawl into ``staging_dir``; returns [{filename, url}] of the downloads."""
    crawler_cls, parser_cls, downloader_cls = _icrawler_classes(engine)
    kwargs: dict[str, Any] = {
        "downloader_cls": downloader_cls,
        "downloader_threads": options.downloader_threads,
        "storage": {"root_dir": str(staging_dir)},
        "log_level": logging.WARNING,
        **(crawler_kwargs or {}),
    }
    if parser_cls is not None:
        kwargs["parser_cls"] = parser_cls
    crawler = crawler_cls(**kwargs)
    crawler.downloader.known_urls = set(known_urls)
    crawler.downloader.fetched = []
    crawl_kwargs: dict[str, Any] = {"keyword": query, "max_num": max_num}
    if options.min_size:
        crawl_kwargs["min_size"] = (options.min_size, options.min_size)
    crawler.crawl(**crawl_kwargs)
    return list(crawler.downloader.fetched)


def _decodes(path: Path) -> bool:
    try:
        with Image.open(path) as im:
            im.load()
        return True
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return False


def crawl_class(
    landmark: Landmark,
    layout: Layout,
    options: CrawlOptions,
    refresh_id: str | None = None,
    fetch: Callable[..., list[dict[str, Any]]] = fetch_query,
) -> ClassCrawl:
    """Crawl every query of one landmark until ``max_per_class`` new images are in raw/."""
    store = RawStore(layout)
    refresh_id = refresh_id or new_refresh_id()
    result = ClassCrawl(landmark.name)
    per_query = max(1, -(-options.max_per_class // max(1, len(landmark.queries))))
    for query in landmark.queries:
        wanted = min(per_query, options.max_per_class - result.added)
        if wanted <= 0:
            break
        for engine in options.engines:
            with tempfile.TemporaryDirectory(prefix="landmarks-crawl-") as staging:
                fetched = fetch(engine, query, wanted, Path(staging), store.known_urls, options)
                added_here = 0
                for rank, item in enumerate(fetched):
                    path = Path(staging) / item["filename"]
                    if not path.is_file() or path.stat().st_size == 0 or not _decodes(path):
                        result.rejected += 1
                        log.info("download from %s is not a decodable image", item["url"])
                        continue
                    url_name = Path(urlparse(item["url"]).path).name or path.name
                    record = store.add_file(
                        path,
                        landmark.name,
                        {
                            "source": engine,
                            "query": query,
                            "url": item["url"],
                            "rank": rank,
                            "refresh": refresh_id,
                            "fetched_at": now_iso(),
                        },
                        name=url_name,
                    )
                    if record is not None:
                        added_here += 1
                result.added += added_here
                result.per_engine[engine] = result.per_engine.get(engine, 0) + added_here
            if added_here:
                break
            log.warning("%s returned nothing new for %r; trying the next engine", engine, query)
    return result


def crawl_catalog(landmarks: list[Landmark], layout: Layout, options: CrawlOptions) -> IngestResult:
    """Crawl every landmark in turn (tasks crawl classes concurrently instead)."""
    check_network(options.engines, options.connectivity_timeout_s)
    refresh_id = new_refresh_id()
    per_class = {}
    for landmark in landmarks:
        per_class[landmark.name] = crawl_class(landmark, layout, options, refresh_id).added
    return IngestResult(
        added=sum(per_class.values()), skipped_known=0, per_class=per_class, refresh_id=refresh_id
    )
