"""The real recorded answers in ../shared/fixtures/crawl (see its README), what each holds, and
readers that take each page's full-size image URLs by a different route than the crawl's
parsers (plain regular expressions or the raw JSON). Shared by the parser tests and
benchmarks/crawl_parsers.py.
"""

from __future__ import annotations

import html
import json
import os
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(
    os.environ.get("LANDMARKS_TEST_CRAWL_FIXTURES", REPO.parent / "shared/fixtures/crawl")
)


class FixtureMissing(FileNotFoundError):
    pass


def fixture(name: str) -> bytes:
    path = FIXTURES / name
    if not path.exists():
        raise FixtureMissing(f"recorded page {path} not found; ../shared must sit beside the repo")
    return path.read_bytes()


def _bing(text: str) -> tuple[int, list[str]]:
    tiles = re.findall(r'class="iusc"[^>]*?\bm="([^"]*)"', text)
    urls = [
        html.unescape(re.search(r"&quot;murl&quot;:&quot;(.*?)&quot;", m).group(1)) for m in tiles
    ]
    return len(tiles), urls


def _google_2020(text: str) -> tuple[int, list[str]]:
    triples = re.findall(r'\["(https?://[^"]+)",\d+,\d+\]', text)
    full = [
        re.sub(r"\\u([0-9a-f]{4})", lambda m: chr(int(m.group(1), 16)), u)
        for u in triples
        if "encrypted-tbn" not in u and "gstatic.com" not in u
    ]
    return len(full), full


def _google_rg_meta(text: str) -> tuple[int, list[str]]:
    urls = re.findall(r'"ou":"(.*?)"', text)
    return len(urls), [json.loads(f'"{u}"') for u in urls]  # JSON string escapes


def _baidu(text: str) -> tuple[int, list[str]]:
    items = [d for d in json.loads(text)["data"] if d]
    return len(items), [d["replaceUrl"][-1]["ObjURL"] for d in items]


def _ddg(text: str) -> tuple[int, list[str]]:
    results = json.loads(text)["results"]
    return len(results), [r["image"] for r in results]


def _openverse(text: str) -> tuple[int, list[str]]:
    results = json.loads(text)["results"]
    return len(results), [r["url"] for r in results]


def _commons(text: str) -> tuple[int, list[str]]:
    pages = json.loads(text)["query"]["pages"]
    pages = pages.values() if isinstance(pages, dict) else pages
    urls = [p["imageinfo"][0]["url"] for p in pages if "url" in p.get("imageinfo", [{}])[0]]
    return len(urls), urls


# engine, file, README's image count, independent reader
RESULTS = [
    ("bing", "bing/gois_bing_images_async.html", 150, _bing),
    ("bing", "bing/gois_bing_images_search.html", 70, _bing),
    ("bing", "bing/retrievalgo_bing_images.html", 47, _bing),
    ("google", "google/gis_google_images_result_page_2020-02-29.html", 100, _google_2020),
    ("google", "google/gois_google_search.html", 100, _google_rg_meta),
    ("baidu", "baidu/lovemoganna_baiduPhoto_acjson_2018.json", 30, _baidu),
    ("duckduckgo", "ddg/duckduckscrape_i.js_default_2022.json", 100, _ddg),
    ("duckduckgo", "ddg/duckduckscrape_i.js_noResults_2022.json", 0, _ddg),
    ("openverse", "openverse/ov_body_q=cat&page=3_keep-alive.json", 20, _openverse),
    ("openverse", "openverse/ov_body_q=querywithnoresults_keep-alive.json", 0, _openverse),
    ("commons", "commons/openverse-catalog_wmc_raw_allimages.json", 28, _commons),
    ("commons", "commons/attribgen_imageinfo_Apple_Lisa2.json", 1, _commons),
    ("commons", "commons/wikipedia_android_image_license_fv2.json", 0, _commons),
]
# engine, file, HTTP status it came with, expected status, words of the reason
BLOCKS = [
    (
        "google",
        "google/hamnix_google_search_enablejs_shell_2026-07.html",
        200,
        "blocked",
        "enablejs",
    ),
    ("google", "google/phrona_google_web_sorry_2026-08.html", 200, "blocked", "/sorry/"),
    ("google", "google/phrona_google_web_sorry_2026-08.html", 429, "throttled", "/sorry/"),
    ("duckduckgo", "ddg/duckduckscrape_d.js_anomalyDetectionBlock.js", 200, "blocked", "anomaly"),
    (
        "openverse",
        "openverse/ov_body_q=SearchPage429error_keep-alive.json",
        429,
        "throttled",
        "throttled",
    ),
]
# The engines' own thumbnail servers (Bing, Google, the Openverse recording proxy).
THUMBNAIL_HOSTS = ("mm.bing.net", "encrypted-tbn", "gstatic.com", "localhost:49153")
