"""Crawl licence-clean image sources and web image search into the append-only raw store.

The package keeps one module per source, each an engine with a feeder + parser pair on
icrawler's framework (:mod:`~landmarks.crawl.framework`):

* :mod:`~landmarks.crawl.commons` (Wikimedia Commons API) and :mod:`~landmarks.crawl.openverse`
  give a licence, an author and a landing page for every image;
* :mod:`~landmarks.crawl.bing`, :mod:`~landmarks.crawl.google`, :mod:`~landmarks.crawl.baidu`
  and :mod:`~landmarks.crawl.duckduckgo` read what the search engines send today and name their
  block pages (:mod:`~landmarks.crawl.blocks`) instead of taking them for empty results.

Shared rooms: :mod:`~landmarks.crawl.download` (atomic downloads: staging file, full decode,
rename into ``raw/`` with a provenance record), :mod:`~landmarks.crawl.state` (incremental
bookkeeping: URLs held or finally refused are never fetched again; ``raw/crawl-urls.jsonl``
says why), :mod:`~landmarks.crawl.orchestrate` (engine order, fallbacks, reports),
:mod:`~landmarks.crawl.dryrun` and :mod:`~landmarks.crawl.attribution` (credits).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Names load on first use: ``landmarks.config`` reads option defaults from
# ``landmarks.crawl.options`` without importing icrawler and the engines.
_LAZY = {
    "AtomicDownloader": "landmarks.crawl.download",
    "AttemptReport": "landmarks.crawl.options",
    "BlockBoard": "landmarks.crawl.blocks",
    "Blocked": "landmarks.crawl.blocks",
    "CatalogCrawl": "landmarks.crawl.options",
    "ClassCrawl": "landmarks.crawl.options",
    "CrawlOptions": "landmarks.crawl.options",
    "DEFAULT_BASE_URLS": "landmarks.crawl.options",
    "DEFAULT_ENGINES": "landmarks.crawl.options",
    "Downloaded": "landmarks.crawl.download",
    "ENGINES": "landmarks.crawl.options",
    "EmptyCrawl": "landmarks.crawl.options",
    "LICENSE_CHOICES": "landmarks.crawl.options",
    "NetworkUnavailable": "landmarks.crawl.options",
    "Rejected": "landmarks.crawl.download",
    "SOURCES": "landmarks.crawl.engines",
    "URL_LIST": "landmarks.crawl.options",
    "attempt_rows": "landmarks.crawl.orchestrate",
    "check_network": "landmarks.crawl.network",
    "crawl_catalog": "landmarks.crawl.orchestrate",
    "crawl_class": "landmarks.crawl.orchestrate",
    "credits": "landmarks.crawl.attribution",
    "describe_page": "landmarks.crawl.blocks",
    "download_image": "landmarks.crawl.download",
    "dry_run": "landmarks.crawl.dryrun",
    "empty_message": "landmarks.crawl.orchestrate",
    "engine_status_rows": "landmarks.crawl.orchestrate",
    "engine_table": "landmarks.crawl.orchestrate",
    "known_urls": "landmarks.crawl.state",
    "make_engine": "landmarks.crawl.engines",
    "queries_for": "landmarks.crawl.framework",
    "read_url_list": "landmarks.crawl.orchestrate",
    "run_attempt": "landmarks.crawl.orchestrate",
    "url_log_path": "landmarks.crawl.state",
    "verify_image": "landmarks.crawl.download",
    "write_credits": "landmarks.crawl.attribution",
    "write_run_credits": "landmarks.crawl.attribution",
}
__all__ = [
    "AtomicDownloader",
    "AttemptReport",
    "BlockBoard",
    "Blocked",
    "CatalogCrawl",
    "ClassCrawl",
    "CrawlOptions",
    "DEFAULT_BASE_URLS",
    "DEFAULT_ENGINES",
    "Downloaded",
    "ENGINES",
    "EmptyCrawl",
    "LICENSE_CHOICES",
    "NetworkUnavailable",
    "Rejected",
    "SOURCES",
    "URL_LIST",
    "attempt_rows",
    "check_network",
    "crawl_catalog",
    "crawl_class",
    "credits",
    "describe_page",
    "download_image",
    "dry_run",
    "empty_message",
    "engine_status_rows",
    "engine_table",
    "known_urls",
    "make_engine",
    "queries_for",
    "read_url_list",
    "run_attempt",
    "url_log_path",
    "verify_image",
    "write_credits",
    "write_run_credits",
]

if TYPE_CHECKING:
    from landmarks.crawl.attribution import credits, write_credits, write_run_credits
    from landmarks.crawl.blocks import BlockBoard, Blocked, describe_page
    from landmarks.crawl.download import (
        AtomicDownloader,
        Downloaded,
        Rejected,
        download_image,
        verify_image,
    )
    from landmarks.crawl.dryrun import dry_run
    from landmarks.crawl.engines import SOURCES, make_engine
    from landmarks.crawl.framework import queries_for
    from landmarks.crawl.network import check_network
    from landmarks.crawl.options import (
        DEFAULT_BASE_URLS,
        DEFAULT_ENGINES,
        ENGINES,
        LICENSE_CHOICES,
        URL_LIST,
        AttemptReport,
        CatalogCrawl,
        ClassCrawl,
        CrawlOptions,
        EmptyCrawl,
        NetworkUnavailable,
    )
    from landmarks.crawl.orchestrate import (
        attempt_rows,
        crawl_catalog,
        crawl_class,
        empty_message,
        engine_status_rows,
        engine_table,
        read_url_list,
        run_attempt,
    )
    from landmarks.crawl.state import known_urls, url_log_path


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'landmarks.crawl' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value
