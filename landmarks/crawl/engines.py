"""The sources by name: each an engine with its feeder + parser pair."""

from __future__ import annotations

from landmarks.crawl.baidu import BaiduEngine, BaiduFeeder, BaiduParser
from landmarks.crawl.bing import BingEngine, BingFeeder, BingParser
from landmarks.crawl.commons import CommonsEngine, CommonsFeeder, CommonsParser
from landmarks.crawl.duckduckgo import DuckDuckGoEngine, DuckDuckGoFeeder, DuckDuckGoParser
from landmarks.crawl.framework import Engine, EngineFeeder, EngineParser
from landmarks.crawl.google import GoogleEngine, GoogleFeeder, GoogleParser
from landmarks.crawl.openverse import OpenverseEngine, OpenverseFeeder, OpenverseParser
from landmarks.crawl.options import CrawlOptions

SOURCES: dict[str, tuple[type[Engine], type[EngineFeeder], type[EngineParser]]] = {
    "commons": (CommonsEngine, CommonsFeeder, CommonsParser),
    "openverse": (OpenverseEngine, OpenverseFeeder, OpenverseParser),
    "bing": (BingEngine, BingFeeder, BingParser),
    "google": (GoogleEngine, GoogleFeeder, GoogleParser),
    "baidu": (BaiduEngine, BaiduFeeder, BaiduParser),
    "duckduckgo": (DuckDuckGoEngine, DuckDuckGoFeeder, DuckDuckGoParser),
}


def make_engine(name: str, options: CrawlOptions) -> Engine:
    if name not in SOURCES:
        raise ValueError(f"unknown engine {name!r}; choose from {', '.join(SOURCES)}")
    return SOURCES[name][0](options)


def licence_skip(engine: Engine) -> str:
    """Why ``--license`` rules this engine out ('' when it does not)."""
    if engine.options.license_filter != "any" and not engine.licensed:
        return (
            f"not asked: {engine.name} gives no licence per image and --license is "
            f"{engine.options.license_filter}"
        )
    return ""
