"""The parsers on real answers recorded from the services (../shared/fixtures/crawl, see its
README): every results page gives its full-size image URLs, exactly, and nothing else; every
block page is named a block. The expected URLs are taken from each page by a different route
than the parser's (plain regular expressions or the raw JSON), and their number is the README's.

Then the same pages served by the local server and read by ``landmarks crawl --dry-run``,
configured only through ``crawl.endpoints``: the same numbers.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from crawl_fixtures import BLOCKS, RESULTS, THUMBNAIL_HOSTS, fixture
from crawl_server import SearchServer
from typer.testing import CliRunner

from landmarks.crawl import Blocked, CrawlOptions, make_engine


@pytest.mark.parametrize(
    ("engine", "name", "count", "reader"), RESULTS, ids=[r[1] for r in RESULTS]
)
def test_each_parser_takes_every_full_size_url_of_a_real_page_and_nothing_else(
    engine: str, name: str, count: int, reader
):
    body = fixture(name)
    listed, expected = reader(body.decode("utf-8"))
    assert listed == count  # the README's number, read from the page another way

    page = make_engine(engine, CrawlOptions()).read(body, 200, "https://example.org/page")
    got = [c["file_url"] for c in page.candidates]

    assert len(got) == len(set(got))  # no repeats
    assert set(got) == set(expected)  # exact: every full-size URL, nothing else
    assert len(got) >= 0.95 * len(set(expected))
    assert not [u for u in got if any(t in u for t in THUMBNAIL_HOSTS)]
    assert not [u for u in got if u.startswith("ippr_")]  # no obfuscated Baidu URLs
    if count:
        # Beyond .jpg: whatever the page holds (png, webp, no extension, query strings).
        assert all(u.startswith(("http://", "https://")) for u in got)


def test_page_links_licences_and_authors_come_with_the_urls():
    bing = make_engine("bing", CrawlOptions()).read(
        fixture("bing/retrievalgo_bing_images.html"), 200, "https://www.bing.com/images/async"
    )
    first = bing.candidates[0]
    assert first["page_url"] == "https://vectorseek.com/vector_logo/golang-gopher-logo-vector/"
    assert (first["width"], first["height"]) == (1000, 1000)
    assert not [c for c in bing.candidates if c["file_url"] == c["page_url"]]

    commons = make_engine("commons", CrawlOptions()).read(
        fixture("commons/openverse-catalog_wmc_raw_allimages.json"), 200, "https://c/w/api.php"
    )
    by_license = {c["license"] for c in commons.candidates}
    assert {"Public domain", "CC BY-SA 4.0", "CC BY-SA 3.0 de"} <= by_license
    pd = next(c for c in commons.candidates if c["license"] == "Public domain")
    assert pd["license_url"] is None and pd["page_url"].startswith("https://commons.wikimedia.org")
    assert all(c["author"] and "<" not in c["author"] for c in commons.candidates)
    lisa = make_engine("commons", CrawlOptions()).read(
        fixture("commons/attribgen_imageinfo_Apple_Lisa2.json"), 200, "https://c/w/api.php"
    )
    # A 300 px thumbnail is narrower than the width asked for: the original is taken.
    assert lisa.candidates[0]["file_url"].endswith("/b/bc/Apple_Lisa2-IMG_1517.jpg")
    assert lisa.candidates[0]["author"] == "Rama & Musée Bolo"
    assert lisa.candidates[0]["license"] == "CC BY-SA 2.0 fr"

    openverse = make_engine("openverse", CrawlOptions()).read(
        fixture("openverse/ov_body_q=cat&page=3_keep-alive.json"), 200, "https://o/v1/images/"
    )
    first = openverse.candidates[0]
    assert (first["license"], first["author"]) == ("CC BY 2.0", "admiller")
    assert first["page_url"] == "https://www.flickr.com/photos/32426194@N00/3481540500"
    assert all(c["license"] and c["license_url"] for c in openverse.candidates)


def test_license_open_keeps_only_cc_and_public_domain_from_a_real_answer():
    body = fixture("commons/openverse-catalog_wmc_raw_allimages.json")
    every = make_engine("commons", CrawlOptions()).read(body, 200, "https://c/w/api.php")
    open_ = make_engine("commons", CrawlOptions(license_filter="open")).read(body, 200, "u")
    dropped = {c["license"] for c in every.candidates} - {c["license"] for c in open_.candidates}
    assert dropped == {"No restrictions"}  # Flickr Commons' "no known restrictions" is no licence
    assert len(open_.candidates) == 26


@pytest.mark.parametrize(
    ("engine", "name", "status", "state", "words"), BLOCKS, ids=[f"{b[1]}-{b[2]}" for b in BLOCKS]
)
def test_each_recorded_block_page_is_named_a_block(
    engine: str, name: str, status: int, state: str, words: str
):
    with pytest.raises(Blocked) as info:
        make_engine(engine, CrawlOptions()).read(fixture(name), status, "https://example.org/x")
    assert info.value.status == state and words in info.value.reason


@pytest.mark.parametrize(
    ("engine", "body", "status", "url", "state"),
    [
        # Generated: no recorded file shows these (the bodies are the ones the issue quotes).
        (
            "baidu",
            b'{"antiFlag":1,"message":"Forbid spider access"}',
            200,
            "https://i/acjson",
            "blocked",
        ),
        (
            "baidu",
            b"<html>verify</html>",
            200,
            "https://wappass.baidu.com/static/captcha/",
            "blocked",
        ),
        (
            "google",
            b"<html>Before you continue to Google</html>",
            200,
            "https://consent.google.com/ml",
            "blocked",
        ),
        (
            "bing",
            b"<html>Too many requests</html>",
            429,
            "https://www.bing.com/images/async",
            "throttled",
        ),
        ("bing", b"<html>Forbidden</html>", 403, "https://www.bing.com/images/async", "blocked"),
        (
            "commons",
            b'{"error":{"code":"maxlag","info":"Waiting for a database server"}}',
            200,
            "https://c/w/api.php",
            "throttled",
        ),
    ],
)
def test_block_answers_without_a_recording_are_blocks_too(engine, body, status, url, state):
    with pytest.raises(Blocked) as info:
        make_engine(engine, CrawlOptions()).read(body, status, url)
    assert info.value.status == state


# --- the same pages through `landmarks crawl --dry-run` against the local server -------------

TOKEN_PAGE = b"<html><script>vqd='4-123456789012345678901234567890'</script></html>"


def _dry_run(tmp_path: Path, server: SearchServer, engine: str) -> dict:
    from flows.cli import app

    catalog = tmp_path / "catalog.toml"
    catalog.write_text('[[landmark]]\nname = "cats"\nenglish = "cats"\nqueries = ["cats"]\n')
    config = tmp_path / "crawl.toml"
    config.write_text(
        "[crawl]\nrequest_delay_s = 0\nmax_retries = 0\ntimeout_s = 5\n"
        "openverse_requests_per_min = 0\n"
        + "".join(f"endpoints.{e} = '{u}'\n" for e, u in server.endpoints().items())
    )
    out = tmp_path / "dry.json"
    result = CliRunner().invoke(
        app,
        [
            "crawl",
            "--dry-run",
            "--json",
            str(out),
            "--config",
            str(config),
            "--catalog",
            str(catalog),
            "--storage",
            str(tmp_path / "s"),
            "--engine",
            engine,
        ],
    )
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "s" / "raw").exists()  # nothing downloaded
    return json.loads(out.read_text())


# engine, file, HTTP status served, expected engine status (None: "ok" with the parser's URLs)
REPLAYED = [(e, n, 200, None) for e, n, count, _ in RESULTS if count] + [
    (e, n, status, state) for e, n, status, state, _ in BLOCKS
]


@pytest.mark.parametrize(
    ("engine", "name", "status", "state"), REPLAYED, ids=[f"{c[1]}-{c[2]}" for c in REPLAYED]
)
def test_dry_run_against_a_server_replaying_a_recorded_page_gives_the_same_numbers(
    tmp_path: Path, engine: str, name: str, status: int, state: str | None
):
    body = fixture(name)
    with SearchServer() as server:
        if engine == "duckduckgo":
            server.replay(engine, TOKEN_PAGE, path="/")
            server.replay(engine, body, status=status, path="/i.js")
        else:
            server.replay(engine, body, status=status)
        answer = _dry_run(tmp_path, server, engine)
    result = answer["engines"][engine]
    if state is not None:  # a block page
        assert result["status"] == state, result
        assert not answer["candidates"]
        return
    expected = make_engine(engine, CrawlOptions()).read(body, 200, "https://x/y").candidates
    assert result["status"] == "ok", result
    got = answer["candidates"]
    assert [c["url"] for c in got] == [c["file_url"] for c in expected]
    assert all(c["engine"] == engine and c["class"] == "cats" for c in got)
    assert set(got[0]) == {
        "class",
        "engine",
        "query",
        "url",
        "page_url",
        "license",
        "author",
        "width",
        "height",
    }
    assert [c["license"] for c in got] == [c["license"] for c in expected]


def test_dry_run_names_an_unreachable_engine_an_error_and_asks_the_next(tmp_path: Path):
    from landmarks.catalog import Landmark
    from landmarks.crawl import dry_run

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    with SearchServer() as server:
        server.replay("bing", fixture("bing/gois_bing_images_search.html"))
        endpoints = {**server.endpoints(), "openverse": f"http://127.0.0.1:{port}/openverse"}
        options = CrawlOptions(
            engines=("openverse", "bing"),
            endpoints=tuple(endpoints.items()),
            request_delay_s=0.0,
            max_retries=0,
            timeout_s=5.0,
            openverse_requests_per_min=0.0,
        )
        answer = dry_run([Landmark("cats", "", "cats", "cats", ("cats",))], options)
    assert answer["engines"]["openverse"]["status"] == "error"
    assert "ConnectionError" in answer["engines"]["openverse"]["detail"]
    assert answer["engines"]["bing"] == {"status": "ok", "detail": "70 candidates from 3 pages"}
    assert {c["engine"] for c in answer["candidates"]} == {"bing"}


def test_dry_run_refuses_a_folder_source_and_imports_nothing(tmp_path: Path):
    from flows.cli import app

    folder = tmp_path / "photos" / "cats"
    folder.mkdir(parents=True)
    result = CliRunner().invoke(
        app,
        [
            "crawl",
            "--dry-run",
            "--source",
            str(tmp_path / "photos"),
            "--storage",
            str(tmp_path / "s"),
        ],
    )
    assert result.exit_code == 2 and "--dry-run" in result.output
    assert not (tmp_path / "s" / "raw").exists()
