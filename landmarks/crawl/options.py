"""What a crawl is asked to do (:class:`CrawlOptions`) and what it reports back."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# Default order: licence-clean sources first, then the search engines (which give no licence).
DEFAULT_ENGINES = ("commons", "openverse", "bing", "google")
ENGINES = ("commons", "openverse", "bing", "google", "baidu", "duckduckgo")
URL_LIST = "urls"  # the engine name recorded for images that came from a URL list
DEFAULT_BASE_URLS = {
    "commons": "https://commons.wikimedia.org",
    "wikidata": "https://query.wikidata.org",
    "openverse": "https://api.openverse.org",
    "bing": "https://www.bing.com",
    "google": "https://www.google.com",
    "baidu": "https://image.baidu.com",
    "duckduckgo": "https://duckduckgo.com",
}
DEFAULT_USER_AGENT = (
    "landmark-pipeline/1.0 (image dataset builder; set crawl.user_agent to your project URL "
    "and e-mail) python-requests"
)
# A desktop browser's User-Agent for the search engines' HTML pages.
BROWSER_USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36"
)
LICENSE_CHOICES = ("any", "open", "commercial")
# Engine status words (the dry-run JSON and the crawl table use them).
OK, EMPTY, BLOCKED, THROTTLED, ERROR = "ok", "empty", "blocked", "throttled", "error"


class NetworkUnavailable(RuntimeError):
    """No engine host can be reached: say how to run offline."""


@dataclass(frozen=True)
class CrawlOptions:
    engines: tuple[str, ...] = DEFAULT_ENGINES
    max_per_class: int = 400
    min_size: int = 100
    downloader_threads: int = 4
    timeout_s: float = 10.0
    connectivity_timeout_s: float = 3.0
    request_delay_s: float = 0.25
    max_retries: int = 3
    backoff_s: float = 1.0
    max_retry_after_s: float = 60.0
    max_bytes: int = 30_000_000
    max_pixels: int = 50_000_000
    type_filter: str | None = "photo"
    size_filter: str | None = None
    license_filter: str = "any"
    endpoints: tuple[tuple[str, str], ...] = ()
    url_list: Path | None = None
    query_time_limit_s: float = 600.0
    user_agent: str = DEFAULT_USER_AGENT
    market: str = "en-US"
    thumb_width: int = 1280
    commons_depth: int = 2
    commons_exclude: tuple[str, ...] = (
        "interior",
        "inside",
        "art",
        "paintings",
        "drawings",
        "maps",
        "models",
        "replicas",
        "souvenirs",
        "people",
        "logos",
        "videos",
        "audio",
    )
    openverse_requests_per_min: float = 20.0  # anonymous callers
    openverse_requests_per_day: int = 200  # anonymous callers
    maxlag_s: int = 5
    openverse_page_size: int = 20  # anonymous callers: at most 20
    openverse_max_results: int = 240  # anonymous callers: at most 240 per query

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
    status: str = OK  # ok | empty | blocked | throttled | error | skipped

    def summary(self) -> str:
        parts = [f"{self.results} results", f"{self.added} new"]
        if self.status in (BLOCKED, THROTTLED, "skipped"):
            parts.insert(0, self.status.upper())
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

    @property
    def blocked(self) -> dict[str, str]:
        """Engine -> 'blocked: reason' / 'throttled: reason' for engines that refused."""
        return {
            a.engine: f"{a.status}: {a.note}"
            for a in self.attempts
            if a.status in (BLOCKED, THROTTLED)
        }


class EmptyCrawl(RuntimeError):
    """A class that had no images ended its crawl with none; ``result`` says what each engine
    answered."""

    def __init__(self, message: str, result: ClassCrawl | None = None) -> None:
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class CatalogCrawl:
    refresh_id: str
    results: tuple[ClassCrawl, ...]
    failed: tuple[str, ...]  # classes that had no images and still have none
    blocked: tuple[tuple[str, str], ...] = ()  # (engine, "status: reason")

    @property
    def added(self) -> int:
        return sum(r.added for r in self.results)

    @property
    def per_class(self) -> dict[str, int]:
        return {r.class_name: r.added for r in self.results}
