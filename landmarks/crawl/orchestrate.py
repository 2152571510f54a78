"""How a crawl goes: classes, engines in order, queries, fallbacks, and what it reports.

Each class asks the engines in the configured order (default: commons, openverse, bing,
google); every engine asks its own queries for an even share of what the class still misses,
and the next engine takes over whatever the previous one left short (no results, an error
page, a block, only URLs already held). An engine that blocked is not asked again during the
same crawl (refresh id). A URL list (``class url`` lines) is fetched first.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from landmarks.catalog import Landmark
from landmarks.crawl.blocks import BlockBoard
from landmarks.crawl.download import AtomicDownloader
from landmarks.crawl.engines import SOURCES, licence_skip, make_engine
from landmarks.crawl.framework import EngineCrawler, ListFeeder, ListParser
from landmarks.crawl.network import check_network
from landmarks.crawl.options import (
    URL_LIST,
    AttemptReport,
    CatalogCrawl,
    ClassCrawl,
    CrawlOptions,
    EmptyCrawl,
)
from landmarks.crawl.state import Attempt, ClassRun
from landmarks.ingest import new_refresh_id

log = logging.getLogger(__name__)


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


def run_attempt(
    run: ClassRun,
    engine_name: str,
    query: str,
    wanted: int,
    urls: list[str] | None = None,
    downloader_cls: type | None = None,
) -> AttemptReport:
    """One engine on one query (or the URL list), through icrawler's threads."""
    options = run.options
    attempt = Attempt(run, engine_name, query, wanted)
    threads = options.downloader_threads
    if engine_name == URL_LIST:
        feeder_cls, parser_cls = ListFeeder, ListParser
        parts_args: dict[str, Any] = {"attempt": attempt}
        feeder_kwargs: dict[str, Any] = {"url_list": urls or []}
        headers: dict[str, str] = {}
        slots = None
    else:
        engine = make_engine(engine_name, options)
        _, feeder_cls, parser_cls = SOURCES[engine_name]
        parts_args = {"engine": engine, "attempt": attempt}
        # Known URLs come back among the results: look that much further down the list.
        feeder_kwargs = {"query": query, "max_num": min(1000, wanted * 2 + len(run.known))}
        threads = max(1, min(threads, engine.max_downloads))
        headers = engine.headers()
        slots = engine.download_slots()
    crawler = EngineCrawler(
        feeder_cls=feeder_cls,
        parser_cls=parser_cls,
        downloader_cls=downloader_cls or AtomicDownloader,  # another only for benchmarks
        downloader_threads=threads,
        storage={"backend": "FileSystem", "root_dir": str(run.staging_dir)},
        extra_feeder_args=parts_args,
        extra_parser_args=parts_args,
        extra_downloader_args={"attempt": attempt, "slots": slots},
    )
    crawler.session.headers.update(headers)
    if hasattr(crawler.downloader, "http"):
        crawler.downloader.http.headers.update(headers)
    attempt.signal = crawler.signal
    start = time.monotonic()
    finished = crawler.run(
        feeder_kwargs,
        {"queue_timeout": 0.2},
        {"max_num": wanted, "queue_timeout": 0.2, "req_timeout": options.timeout_s},
        options.query_time_limit_s,
    )
    if not finished:
        attempt.note(f"stopped at the {options.query_time_limit_s:.0f}s time limit")
    report = attempt.report(time.monotonic() - start)
    log.info("%s %s %r: %s", run.landmark.name, engine_name, query, report.summary())
    return report


def _not_asked(engine: str, query: str, status: str, note: str) -> AttemptReport:
    return AttemptReport(engine=engine, query=query, wanted=0, status=status, note=note)


def crawl_class(
    landmark: Landmark,
    layout: Any,
    options: CrawlOptions,
    refresh_id: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ClassCrawl:
    """Crawl one landmark until ``max_per_class`` new images are in raw/ or the engines run dry.

    Raises:
        EmptyCrawl: the class had no image before and still has none; the message says what
            each engine answered.
    """
    run = ClassRun(landmark, layout, options, refresh_id or new_refresh_id(), progress)
    attempts: list[AttemptReport] = []
    if options.url_list is not None:
        urls = read_url_list(options.url_list).get(landmark.name, [])
        if urls:
            label = f"url list {Path(options.url_list).name}"
            attempts.append(run_attempt(run, URL_LIST, label, min(len(urls), run.remaining), urls))
    for n, name in enumerate(options.engines):
        if run.remaining <= 0:
            break
        engine = make_engine(name, options)
        queries = engine.queries(landmark)
        skip = licence_skip(engine)
        if skip:
            attempts.append(_not_asked(name, queries[0] if queries else "", "skipped", skip))
            continue
        before = run.added
        for i, query in enumerate(queries):
            if run.remaining <= 0:
                break
            earlier = BlockBoard.get(run.refresh_id, name)
            if earlier is not None:
                note = f"not asked: {earlier[0]} earlier in this crawl ({earlier[1]})"
                attempts.append(_not_asked(name, query, earlier[0], note))
                break
            # An even share of what is missing, so a short query leaves more for the next one.
            share = -(-run.remaining // (len(queries) - i))
            attempts.append(run_attempt(run, name, query, min(share, run.remaining)))
        if run.remaining > 0 and n < len(options.engines) - 1:
            log.warning(
                "%s: %s gave %d new images, %d still missing; asking %s",
                landmark.name,
                name,
                run.added - before,
                run.remaining,
                options.engines[n + 1],
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
    layout: Any,
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
    blocked = tuple(
        (engine, f"{status}: {reason}")
        for engine, (status, reason) in sorted(BlockBoard.all(refresh_id).items())
    )
    return CatalogCrawl(refresh_id, tuple(results), tuple(failed), blocked)


def engine_table(results: Iterable[ClassCrawl], failed: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Rows of new images per class and engine (for the CLI and the Prefect table artifact);
    ``blocked`` names the engines that refused, and why."""
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
                "blocked": "; ".join(f"{e} {why}"[:160] for e, why in r.blocked.items()) or "-",
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
            "status": a.status,
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


def engine_status_rows(results: Iterable[ClassCrawl]) -> list[dict[str, Any]]:
    """One row per engine over a whole crawl: ok / empty / error / skipped, or blocked /
    throttled with the reason (the first one seen)."""
    rows: dict[str, dict[str, Any]] = {}
    rank = {"blocked": 5, "throttled": 4, "ok": 3, "skipped": 2, "error": 1, "empty": 0}
    for result in results:
        for a in result.attempts:
            row = rows.setdefault(
                a.engine, {"engine": a.engine, "status": a.status, "new": 0, "detail": "-"}
            )
            row["new"] += a.added
            if rank.get(a.status, 0) > rank.get(row["status"], 0):
                row["status"] = a.status
                if a.status in ("blocked", "throttled", "skipped"):
                    row["detail"] = a.note[:300] or "-"
    return list(rows.values())
