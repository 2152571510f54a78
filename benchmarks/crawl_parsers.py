"""Parser yield on real recorded answers (../shared/fixtures/crawl): our parsers against
icrawler's own (the baseline, measured in the same run on the same bytes).

For every recorded page: the full-size image URLs it holds (taken by an independent reader,
see tests/crawl_fixtures.py), how many of them each parser returns exactly, what else it
returns (thumbnails, cut URLs), and the verdict on block pages (ours names the block; icrawler's
parsers can only say "no results"). icrawler has parsers for Bing, Google and Baidu only.

    .venv/bin/python benchmarks/crawl_parsers.py [--repeats 5]

Every number comes from this run, on this machine; times are the best of ``--repeats``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import requests  # noqa: E402
from crawl_fixtures import BLOCKS, RESULTS, fixture  # noqa: E402
from icrawler.builtin.baidu import BaiduParser  # noqa: E402
from icrawler.builtin.bing import BingParser  # noqa: E402
from icrawler.builtin.google import GoogleParser  # noqa: E402
from icrawler.utils import Signal  # noqa: E402

from landmarks.crawl import Blocked, CrawlOptions, make_engine  # noqa: E402

ICRAWLER = {"bing": BingParser, "google": GoogleParser, "baidu": BaiduParser}


def _response(body: bytes, status: int, url: str) -> requests.Response:
    response = requests.Response()
    response._content = body
    response.status_code = status
    response.url = url
    response.encoding = "utf-8"
    return response


def ours(engine: str, body: bytes, status: int) -> tuple[list[str], str]:
    try:
        page = make_engine(engine, CrawlOptions()).read(body, status, "https://example.org/p")
    except Blocked as block:
        return [], f"{block.status}: {block.reason[:40]}"
    return [c["file_url"] for c in page.candidates], "results" if page.candidates else "empty"


def icrawler(engine: str, body: bytes, status: int) -> tuple[list[str], str] | None:
    if engine not in ICRAWLER:
        return None
    parser = ICRAWLER[engine](1, Signal(), requests.Session())
    try:
        tasks = parser.parse(_response(body, status, "https://example.org/p"))
        urls = [t["file_url"] for t in (list(tasks) if tasks is not None else [])]
    except Exception as exc:  # noqa: BLE001 - what upstream does on this page is the result
        return [], f"raises {type(exc).__name__}"
    return urls, "results" if urls else "no results (None)" if tasks is None else "no results"


def best_ms(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    head = (
        f"{'page':<52} {'imgs':>4} | {'ours':>9} {'extra':>5} {'ms':>6} | "
        f"{'icrawler':>9} {'extra':>5} {'ms':>6} | ours/icrawler"
    )
    print("Distinct full-size image URLs taken exactly (yield), and anything else returned")
    print("(extra: thumbnails, URLs cut at '.jpg', page links); ms: best parse time\n")
    print(head)
    print("-" * len(head))
    totals = {"expected": 0, "ours": 0, "icrawler": 0, "icrawler_expected": 0, "ours_there": 0}
    for engine, name, count, reader in RESULTS:
        body = fixture(name)
        _, expected_list = reader(body.decode("utf-8"))
        expected = set(expected_list)
        got, _ = ours(engine, body, 200)
        t_ours = best_ms(lambda e=engine, b=body: ours(e, b, 200), args.repeats)
        hit = len(set(got) & expected)
        extra = len(set(got) - expected)
        totals["expected"] += len(expected)
        totals["ours"] += hit
        ours_cell = f"{hit}/{len(expected)}"
        base = icrawler(engine, body, 200)
        if base is None:
            base_cell, base_extra, t_base, ratio = "n/a", "", "", "(icrawler has no parser)"
        else:
            t = best_ms(lambda e=engine, b=body: icrawler(e, b, 200), args.repeats)
            base_hit = len(set(base[0]) & expected)
            totals["icrawler"] += base_hit
            totals["icrawler_expected"] += len(expected)
            totals["ours_there"] += hit
            base_cell = f"{base_hit}/{len(expected)}"
            base_extra, t_base = str(len(set(base[0]) - expected)), f"{t:6.1f}"
            ratio = f"{hit / base_hit:.2f}x" if base_hit else ("-" if not hit else "inf")
        print(
            f"{name:<52} {count:>4} | {ours_cell:>9} {extra:>5} {t_ours:6.1f} | "
            f"{base_cell:>9} {base_extra:>5} {t_base:>6} | {ratio}"
        )
    print("-" * len(head))
    print(
        f"ours: {totals['ours']}/{totals['expected']} distinct full-size URLs on all pages. "
        f"On the Bing/Google/Baidu pages: ours {totals['ours_there']}/"
        f"{totals['icrawler_expected']}, icrawler {totals['icrawler']}/"
        f"{totals['icrawler_expected']} "
        f"({totals['ours_there'] / max(1, totals['icrawler']):.2f}x)"
    )
    print("(imgs: the README's count of result tiles; a page may show one URL twice)")
    print("\nBlock pages: what each parser makes of them\n")
    print(f"{'page':<58} {'HTTP':>4} | {'ours':<48} | icrawler")
    for engine, name, status, _state, _words in BLOCKS:
        body = fixture(name)
        _, verdict = ours(engine, body, status)
        base = icrawler(engine, body, status)
        print(f"{name:<58} {status:>4} | {verdict:<48} | {base[1] if base else 'n/a'}")


if __name__ == "__main__":
    main()
