"""The crawl against a local search engine: icrawler's real feeders, parsers and downloader
threads fetch result pages and real photos from tests/crawl_server.py on 127.0.0.1.

The last tests run the same crawl through the refresh flow (Prefect) and the CLI, since what
they add (a failed class is a visible failure, a table per class and engine) is crawl behaviour.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from conftest import real_files
from crawl_server import Behaviour, SearchServer
from PIL import Image
from typer.testing import CliRunner

from landmarks.catalog import Landmark
from landmarks.crawl import (
    CrawlOptions,
    EmptyCrawl,
    NetworkUnavailable,
    check_network,
    crawl_catalog,
    crawl_class,
    known_urls,
    read_url_list,
    url_log_path,
)
from landmarks.storage import Layout, read_jsonl, sha256_file


@pytest.fixture
def server():
    with SearchServer() as s:
        yield s


@pytest.fixture(scope="module")
def photos(real_raw: Path) -> list[Path]:
    """Real petra photos, largest short side first (so a min-size test can use the last)."""

    def short_side(p: Path) -> int:
        with Image.open(p) as im:
            return min(im.size)

    return sorted(real_files("petra", 40), key=short_side, reverse=True)


def landmark(name: str = "petra", *queries: str) -> Landmark:
    queries = queries or ("Petra",)
    return Landmark(name, "", queries[0], queries[0], tuple(queries))


def options(server: SearchServer, **kw) -> CrawlOptions:
    values = dict(
        engines=("bing",),
        max_per_class=50,
        min_size=32,
        downloader_threads=2,
        # Loopback answers in milliseconds; a loaded 2-core CI machine can still stall a thread
        # for a second, so only the deliberately slow image may ever reach a timeout.
        timeout_s=5.0,
        connectivity_timeout_s=5.0,
        request_delay_s=0.0,
        max_retries=1,
        backoff_s=0.05,
        endpoints=tuple(server.endpoints().items()),
        openverse_requests_per_min=0.0,  # the pacing has its own test
    )
    values.update(kw)
    return CrawlOptions(**values)


def raw_images(layout: Layout) -> list[Path]:
    return sorted(p for p in layout.raw_dir.glob("*/*") if p.is_file())


def assert_raw_holds_only_whole_images(layout: Layout) -> None:
    for path in raw_images(layout):
        assert path.stat().st_size > 0
        with Image.open(path) as im:
            im.load()  # raises on an HTML page or a truncated file
    assert not [p for p in layout.root.rglob("*.part")]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("engine", ["commons", "openverse", "google", "bing", "baidu"])
def test_a_normal_page_lands_verified_images_with_provenance(
    tmp_path: Path, server: SearchServer, photos: list[Path], engine: str
):
    names = [server.photo(f"p{i}", photos[i]) for i in range(6)]
    server.set_results(engine, "Petra", names)
    layout = Layout(tmp_path / "s")

    result = crawl_class(landmark(), layout, options(server, engines=(engine,)), "r1")

    assert result.added == 6 and result.per_engine == {engine: 6} and result.had_before == 0
    records = read_jsonl(layout.raw_manifest)
    assert len(records) == 6
    by_url = {r["url"]: r for r in records}
    for i, name in enumerate(names):
        r = by_url[server.url(name)]
        assert (r["engine"], r["query"], r["refresh"]) == (engine, "Petra", "r1")
        assert r["class"] == "petra"
        assert r["rank"] == i + 1 and r["fetched_at"]
        path = layout.raw_dir / r["path"]
        assert r["sha256"] == sha256_file(path) == sha256_file(photos[i])
        assert r["bytes"] == path.stat().st_size
        with Image.open(photos[i]) as im:
            assert (r["width"], r["height"], r["format"]) == (*im.size, im.format)
        assert path.suffix == {"JPEG": ".jpg", "WEBP": ".webp", "PNG": ".png"}[r["format"]]
        # Licence fields in every record; the licence-clean sources fill them.
        assert {"license", "license_url", "author", "page_url"} <= set(r)
        if engine in ("commons", "openverse"):
            assert r["license"] == "CC BY-SA 4.0" and r["author"] == "A. Author"
            assert r["license_url"].startswith("https://creativecommons.org/")
            assert r["page_url"].startswith("https://")
        else:
            assert r["license"] is None and r["author"] is None
    assert_raw_holds_only_whole_images(layout)
    # The type filter reached the engine in its own dialect (Baidu has no "photo" type).
    page = [p for p in server.page_requests if p != "/baidu/"][0]
    assert {
        "commons": "gsrsearch=Petra",
        "openverse": "category=photograph",
        "google": "itp%3Aphoto",
        "bing": "filterui:photo-photo",
        "baidu": "word=Petra",
    }[engine] in page
    # The market is asked for, not guessed from the client (icrawler sends zh-CN).
    assert server.languages[engine] == {"en-US,en;q=0.8"}
    if engine == "bing":
        assert "mkt=en-US" in page and "count=35" in page


def test_a_block_page_stops_the_engine_for_the_whole_crawl_and_the_next_takes_over(
    tmp_path: Path, server: SearchServer, photos
):
    # Google's consent page (what the local server sends when it has no results) is a block.
    names = [server.photo(f"p{i}", photos[i]) for i in range(4)]
    server.set_results("bing", "Petra", names[:2])
    server.set_results("bing", "Petra Jordan", names[2:])
    layout = Layout(tmp_path / "s")
    opts = options(server, engines=("google", "bing"))

    result = crawl_class(landmark("petra", "Petra", "Petra Jordan"), layout, opts, "r-block")

    google_first, google_second = [a for a in result.attempts if a.engine == "google"]
    assert google_first.status == "blocked" and "consent" in google_first.note
    assert google_second.status == "blocked" and "not asked" in google_second.note
    assert result.added == 4 and result.per_engine == {"google": 0, "bing": 4}
    assert result.blocked["google"].startswith("blocked: ")
    google_pages = [p for p in server.page_requests if p.startswith("/google/")]
    assert len(google_pages) == 1  # one request, no retry storm, never asked again
    # The next class of the same crawl does not ask Google either.
    server.set_results("bing", "Wadi Rum", [server.photo("rum", photos[4])])
    crawl_class(landmark("wadi_rum", "Wadi Rum"), layout, opts, "r-block")
    assert len([p for p in server.page_requests if p.startswith("/google/")]) == 1


def test_empty_pages_fail_a_new_class_and_say_what_each_engine_held(
    tmp_path: Path, server: SearchServer
):
    layout = Layout(tmp_path / "s")
    with pytest.raises(EmptyCrawl) as info:
        crawl_class(landmark(), layout, options(server, engines=("google", "bing")))
    message = str(info.value)
    assert "google 'Petra': BLOCKED, 0 results" in message and "bing 'Petra': 0 results" in message
    assert "cookie-consent page" in message and "--engine" in message
    assert [a.engine for a in info.value.result.attempts] == ["google", "bing"]
    assert raw_images(layout) == []


def test_bad_downloads_never_land_in_raw(tmp_path: Path, server: SearchServer, photos):
    small = photos[-1]
    with Image.open(small) as im:
        min_size = min(im.size) + 1
    good = [server.photo("good0", photos[0]), server.photo("good1", photos[1])]
    server.add("flaky", Behaviour("flaky", photos[2], fail_times=1))
    bad = {
        "missing": Behaviour("status", status=404),
        "broken": Behaviour("status", status=500),
        "slow": Behaviour("slow", photos[3], seconds=10.0),
        "hotlink": Behaviour("html"),
        "cut": Behaviour("truncated", photos[4], keep_fraction=0.6),
        "zero": Behaviour("empty"),
        "tiny": Behaviour("photo", small),
    }
    for name, behaviour in bad.items():
        server.add(name, behaviour)
    server.set_results("bing", "Petra", [*good, "flaky", *bad])
    layout = Layout(tmp_path / "s")
    opts = options(server, timeout_s=2.0, min_size=min_size)

    result = crawl_class(landmark(), layout, opts)

    assert result.added == 3
    assert {r["url"] for r in read_jsonl(layout.raw_manifest)} == {
        server.url(n) for n in [*good, "flaky"]
    }
    assert result.attempts[0].rejected == {
        "http_error": 1,
        "server_error": 1,
        "timeout": 1,
        "not_an_image": 1,
        "truncated": 1,
        "empty": 1,
        "too_small": 1,
    }
    assert len(raw_images(layout)) == 3
    assert_raw_holds_only_whole_images(layout)
    # Retried with backoff: the flaky image on its second try, the 500 once more, then given up.
    assert server.image_hits("flaky") == 2 and server.image_hits("broken") == 2
    assert server.image_hits("missing") == 1
    logged = {r["url"].rsplit("/", 1)[1][:-4]: r for r in read_jsonl(url_log_path(layout))}
    assert logged["hotlink"]["outcome"] == "not_an_image"
    assert "HTML page" in logged["hotlink"]["detail"]
    # Final failures are never fetched again; network trouble is retried by the next crawl.
    known = known_urls(layout)
    assert {server.url(n) for n in ["missing", "hotlink", "cut", "zero", "tiny"]} <= known
    assert not {server.url(n) for n in ["broken", "slow"]} & known


def test_the_same_url_under_two_queries_is_downloaded_once(
    tmp_path: Path, server: SearchServer, photos
):
    a, b, c, d = (server.photo(f"p{i}", photos[i]) for i in range(4))
    server.set_results("bing", "Petra", [a, b, c])
    server.set_results("bing", "Petra Jordan", [c, d])
    layout = Layout(tmp_path / "s")

    result = crawl_class(landmark("petra", "Petra", "Petra Jordan"), layout, options(server))

    assert result.added == 4
    assert server.image_hits(c) == 1
    records = {r["url"]: r for r in read_jsonl(layout.raw_manifest)}
    assert records[server.url(c)]["query"] == "Petra"
    second = result.attempts[1]
    assert (second.query, second.results, second.known, second.added) == ("Petra Jordan", 2, 1, 1)


def test_a_recrawl_downloads_only_the_new_images(tmp_path: Path, server: SearchServer, photos):
    old = [server.photo(f"old{i}", photos[i]) for i in range(5)]
    server.set_results("bing", "Petra", old)
    layout = Layout(tmp_path / "s")
    crawl_class(landmark(), layout, options(server), "r1")
    manifest_before = layout.raw_manifest.read_text()
    files_before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in raw_images(layout)}

    new = [server.photo(f"new{i}", photos[5 + i]) for i in range(3)]
    copy = server.photo("old0-copy", photos[0])  # a new URL with bytes we already hold
    server.set_results("bing", "Petra", [new[0], *old[:2], new[1], copy, *old[2:], new[2]])
    second = crawl_class(landmark(), layout, options(server), "r2")

    assert second.added == 3 and second.had_before == 5
    assert second.attempts[0].known == 5 and second.attempts[0].duplicates == 1
    assert all(server.image_hits(n) == 1 for n in [*old, *new, copy])
    # raw/ is append-only: old files untouched, old records unchanged, new ones appended.
    assert layout.raw_manifest.read_text().startswith(manifest_before)
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in files_before} == files_before
    refreshes = {r["url"]: r["refresh"] for r in read_jsonl(layout.raw_manifest)}
    assert refreshes == {
        **{server.url(n): "r1" for n in old},
        **{server.url(n): "r2" for n in new},
    }

    third = crawl_class(landmark(), layout, options(server), "r3")  # nothing new: no failure
    assert third.added == 0 and server.image_hits(copy) == 1
    assert all(server.image_hits(n) == 1 for n in [*old, *new])


@pytest.mark.parametrize("failure", ["http-503", "connection-refused"])
def test_an_engine_that_fails_falls_back_to_the_next(
    tmp_path: Path, server: SearchServer, photos, failure: str
):
    names = [server.photo(f"p{i}", photos[i]) for i in range(4)]
    server.set_results("google", "Petra", names)
    endpoints = server.endpoints()
    if failure == "http-503":
        server.page_status["bing"] = 503
    else:
        endpoints["bing"] = f"http://127.0.0.1:{closed_port()}/bing"
    opts = options(server, engines=("bing", "google"), endpoints=tuple(endpoints.items()))
    layout = Layout(tmp_path / "s")

    result = crawl_class(landmark(), layout, opts)

    bing, google = result.attempts
    assert (bing.engine, bing.added) == ("bing", 0) and bing.pages_failed >= 1
    assert ("HTTP 503" if failure == "http-503" else "ConnectionError") in bing.note
    assert (google.engine, google.added) == ("google", 4)
    assert {r["engine"] for r in read_jsonl(layout.raw_manifest)} == {"google"}


def test_a_url_list_is_fetched_first_with_ranks(tmp_path: Path, server: SearchServer, photos):
    names = [server.photo(f"u{i}", photos[i]) for i in range(3)]
    url_file = tmp_path / "urls.txt"
    url_file.write_text(
        "# class url\n"
        + "".join(f"petra {server.url(n)}\n" for n in names)
        + f"petra,{server.url('gone')}\n"
        + f"atlantis {server.url('u0')}\n"
    )
    layout = Layout(tmp_path / "s")

    result = crawl_class(landmark(), layout, options(server, engines=(), url_list=url_file))

    assert result.added == 3 and result.per_engine == {"urls": 3}
    assert result.attempts[0].rejected == {"http_error": 1}
    ranks = {r["url"]: r["rank"] for r in read_jsonl(layout.raw_manifest)}
    assert ranks == {server.url(n): i + 1 for i, n in enumerate(names)}
    bad = tmp_path / "bad.txt"
    bad.write_text("petra http://ok/a.jpg\npetra-no-url\n")
    with pytest.raises(ValueError, match="bad.txt:2"):
        read_url_list(bad)


def test_license_open_keeps_only_cc_and_public_domain_and_skips_unlicensed_engines(
    tmp_path: Path, server: SearchServer, photos
):
    names = [server.photo(f"p{i}", photos[i]) for i in range(4)]
    server.licenses["p1"] = ("CC BY-NC 2.0", "https://creativecommons.org/licenses/by-nc/2.0/", "B")
    server.licenses["p2"] = ("No restrictions", "https://www.flickr.com/commons/usage/", "C")
    server.licenses["p3"] = ("Public domain", "", "D")
    server.set_results("commons", "Petra", names)
    server.set_results("bing", "Petra", names)
    layout = Layout(tmp_path / "s")

    opts = options(server, engines=("commons", "bing"), license_filter="open")
    result = crawl_class(landmark(), layout, opts)

    held = {r["url"]: r["license"] for r in read_jsonl(layout.raw_manifest)}
    assert held == {
        server.url("p0"): "CC BY-SA 4.0",
        server.url("p1"): "CC BY-NC 2.0",
        server.url("p3"): "Public domain",
    }
    bing = [a for a in result.attempts if a.engine == "bing"][0]
    assert bing.status == "skipped" and "no licence per image" in bing.note
    assert not [p for p in server.page_requests if p.startswith("/bing/")]

    commercial = options(server, engines=("commons",), license_filter="commercial")
    layout2 = Layout(tmp_path / "s2")
    crawl_class(landmark(), layout2, commercial)
    kept = {r["license"] for r in read_jsonl(layout2.raw_manifest)}
    assert kept == {"CC BY-SA 4.0", "Public domain"}


def test_the_network_check_uses_the_endpoints_and_fails_fast(server: SearchServer):
    check_network(("bing",), 1.0, {"bing": server.endpoints()["bing"]})
    with pytest.raises(NetworkUnavailable, match="--source DIR"):
        check_network(("bing",), 1.0, {"bing": f"http://127.0.0.1:{closed_port()}"})


def test_catalog_crawl_reports_an_empty_class_and_carries_on(
    tmp_path: Path, server: SearchServer, photos
):
    names = [server.photo(f"p{i}", photos[i]) for i in range(3)]
    server.set_results("bing", "Petra", names)
    layout = Layout(tmp_path / "s")
    seen = []

    result = crawl_catalog(
        [landmark("atlantis", "Atlantis"), landmark()],
        layout,
        options(server, max_per_class=3),
        progress=lambda done, total: seen.append((done, total)),
    )

    assert result.failed == ("atlantis",) and result.per_class == {"atlantis": 0, "petra": 3}
    assert seen[-1] == (6, 6) and all(total == 6 for _, total in seen)
    assert len(read_jsonl(layout.raw_manifest)) == 3


# --- through Prefect and the CLI ----------------------------------------------------------


def _catalog(tmp_path: Path) -> Path:
    path = tmp_path / "catalog.toml"
    path.write_text(
        '[[landmark]]\nname = "petra"\nenglish = "Petra"\nlocal = "Petra"\nqueries = ["Petra"]\n'
        '[[landmark]]\nname = "atlantis"\nenglish = "Atlantis"\nlocal = "Atlantis"\n'
        'queries = ["Atlantis"]\n'
    )
    return path


def _crawl_settings(server: SearchServer) -> dict:
    return {
        "engines": ["bing"],
        "endpoints": server.endpoints(),
        "max_per_class": 4,
        "min_size": 32,
        "request_delay_s": 0.0,
        "max_retries": 0,
        "timeout_s": 2.0,
    }


def test_refresh_flow_fails_visibly_for_an_empty_class_while_others_carry_on(
    prefect_harness, tmp_path: Path, server: SearchServer, photos, monkeypatch
):
    import flows.refresh
    from flows.refresh import CrawlFailed, refresh
    from tasks.crawl import crawl_class_task

    # The real task without its production retry pauses (10 s, 20 s).
    monkeypatch.setattr(flows.refresh, "crawl_class_task", crawl_class_task.with_options(retries=0))
    server.set_results("bing", "Petra", [server.photo(f"p{i}", photos[i]) for i in range(4)])
    storage = tmp_path / "s"

    with pytest.raises(CrawlFailed, match="atlantis"):
        refresh(
            overrides={
                "storage_dir": str(storage),
                "source": "web",
                "catalog_path": str(_catalog(tmp_path)),
                "crawl": _crawl_settings(server),
            }
        )

    records = read_jsonl(Layout(storage).raw_manifest)
    assert len(records) == 4 and {r["class"] for r in records} == {"petra"}
    assert not (storage / "clean").exists()  # stopped before cleaning a dataset missing a class

    # The UI shows it: a table per class and engine, a table per class, a progress bar.
    import json

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterKey,
        FlowFilter,
        FlowFilterName,
    )
    from prefect.client.schemas.sorting import FlowRunSort

    from tests.prefect_api import settled_task_runs

    with get_client(sync_client=True) as client:

        def latest(key: str):
            found = client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
            )
            return sorted(found, key=lambda a: a.created)[-1]

        summary = json.loads(latest("crawl-per-class").data)
        engines = json.loads(latest("crawl-engines").data)
        per_class = latest("crawl-petra")
        progress = latest("crawl-progress-petra")
        flow_run = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["refresh"])),
            sort=FlowRunSort.START_TIME_DESC,
            limit=1,
        )[0]
    task_runs = settled_task_runs(flow_run.id, expect={"crawl-class"})
    assert flow_run.state.is_failed()
    crawl_states = sorted(t.state.type.value for t in task_runs if t.name.startswith("crawl-class"))
    assert crawl_states == ["COMPLETED", "FAILED"]
    assert {r["class"]: (r["bing"], r["status"]) for r in summary} == {
        "petra": (4, "ok"),
        "atlantis": (0, "FAILED: no images"),
    }
    assert json.loads(per_class.data)[0]["new"] == 4
    assert [(e["engine"], e["status"], e["new"]) for e in engines] == [("bing", "ok", 4)]
    assert progress.type == "progress" and float(progress.data) == 100.0


def test_cli_crawl_is_incremental_and_fails_for_an_empty_class(
    tmp_path: Path, server: SearchServer, photos
):
    from flows.cli import app

    runner = CliRunner()
    server.set_results("bing", "Petra", [server.photo(f"p{i}", photos[i]) for i in range(3)])
    config = tmp_path / "crawl.toml"
    config.write_text(
        "[crawl]\n" + "".join(f"endpoints.{e} = '{u}'\n" for e, u in server.endpoints().items())
    )
    args = [
        "crawl",
        "--config",
        str(config),
        "--storage",
        str(tmp_path / "s"),
        "--catalog",
        str(_catalog(tmp_path)),
        "--engine",
        "bing",
        "--min-size",
        "32",
        "--delay",
        "0",
        "--timeout",
        "2",
    ]

    first = runner.invoke(app, [*args, "--class", "petra"])
    assert first.exit_code == 0, first.output
    assert "3 new images" in first.output and "petra" in first.output
    again = runner.invoke(app, [*args, "--class", "petra"])
    assert again.exit_code == 0 and "0 new images" in again.output
    both = runner.invoke(app, args)
    assert both.exit_code == 1
    assert "no image at all for atlantis" in both.output
    assert all(server.image_hits(f"p{i}") == 1 for i in range(3))
    # A block is named on the console, with what it was, and the next engine takes over.
    server.set_results("bing", "Petra", [server.photo("p3", photos[3])])
    google_first = [*(("google" if a == "bing" else a) for a in args), "--engine", "bing"]
    blocked = runner.invoke(app, [*google_first, "--class", "petra"])
    assert blocked.exit_code == 0, blocked.output
    assert "google was blocked: Google cookie-consent page" in blocked.output
    assert "1 new images" in blocked.output


def test_cli_crawl_help_documents_engines_queries_limits_and_increments():
    from flows.cli import app

    text = CliRunner().invoke(app, ["crawl", "--help"], terminal_width=200).output
    for word in [
        "Google",
        "Bing",
        "Baidu",
        "API key",
        "--engine",
        "Queries",
        "local-language",
        "--max-per-class",
        "--min-size",
        "Incremental",
        "never downloaded again",
        "--url-list",
    ]:
        assert word in text, word


def test_the_default_catalog_names_commons_categories_wikidata_items_and_local_queries():
    from landmarks.catalog import load_catalog
    from landmarks.crawl import make_engine

    catalog = load_catalog()
    assert len(catalog) == 17
    for lm in catalog:
        assert lm.commons_category and not lm.commons_category.startswith("Category:")
        assert lm.wikidata == "" or lm.wikidata[0] == "Q" and lm.wikidata[1:].isdigit()
        # Queries in the local language(s), not only English.
        assert any(not q.isascii() for q in lm.queries) or lm.local.isascii(), lm.name
        commons = make_engine("commons", CrawlOptions()).queries(lm)
        assert commons[0] == f"Category:{lm.commons_category}"
        if lm.wikidata:
            assert commons[1] == f"haswbstatement:P180={lm.wikidata}"
    eiffel = next(lm for lm in catalog if lm.name == "eiffel_tower")
    assert (eiffel.commons_category, eiffel.wikidata) == ("Eiffel Tower", "Q243")


def test_commons_recurses_into_subcategories_skips_excluded_ones_and_pages_through_continue(
    tmp_path: Path, server: SearchServer, photos
):
    names = [server.photo(f"c{i}", photos[i]) for i in range(12)]
    server.page_size["commons"] = 4  # 11 files: three pages joined through `continue`
    server.set_results("commons", "Category:Petra", names[:11])
    server.subcategories["Category:Petra"] = ["Category:Al-Khazneh", "Category:Interior of Petra"]
    server.set_results("commons", "Category:Al-Khazneh", names[11:])
    server.set_results("commons", "Category:Interior of Petra", [server.photo("x", photos[12])])
    server.subcategories["Category:Al-Khazneh"] = ["Category:Too deep"]
    server.set_results("commons", "Category:Too deep", [server.photo("deep", photos[13])])
    layout = Layout(tmp_path / "s")
    lm = Landmark("petra", "Jordan", "Petra", "البتراء", ("Petra",), commons_category="Petra")

    result = crawl_class(lm, layout, options(server, engines=("commons",), commons_depth=1))

    held = {r["url"] for r in read_jsonl(layout.raw_manifest)}
    assert held == {server.url(n) for n in names}  # not the interior, not below depth 1
    assert result.attempts[0].query == "Category:Petra"
    asked = [p for p in server.page_requests if p.startswith("/commons/")]
    assert all("maxlag=5" in p and "iiurlwidth=1280" in p for p in asked)
    assert not [p for p in asked if "Interior" in p or "Too+deep" in p]
    assert len([p for p in asked if "gcmcontinue=" in p]) == 2
    # Wikimedia's rule: a descriptive User-Agent, for the API and the downloads alike.
    assert server.agents["commons"] == server.agents["img"] == {CrawlOptions().user_agent}


def test_attribution_lists_licence_author_and_page_of_every_image_of_a_dataset_version(
    tmp_path: Path, server: SearchServer, photos
):
    import csv

    from flows.cli import app

    runner = CliRunner()
    storage = tmp_path / "s"
    names = [server.photo(f"a{i}", photos[i]) for i in range(12)]
    server.licenses["a3"] = ("Public domain", "", "Anonymous")
    server.set_results("commons", "Petra", names[:6])
    server.set_results("openverse", "Atlantis", names[6:])
    config = tmp_path / "crawl.toml"
    config.write_text(
        "[crawl]\nrequest_delay_s = 0\nmin_size = 32\nmax_retries = 0\n"
        "openverse_requests_per_min = 0\n"
        + "".join(f"endpoints.{e} = '{u}'\n" for e, u in server.endpoints().items())
    )
    common = ["--config", str(config), "--storage", str(storage)]
    crawled = runner.invoke(
        app,
        [
            "crawl",
            *common,
            "--catalog",
            str(_catalog(tmp_path)),
            "-e",
            "commons",
            "-e",
            "openverse",
        ],
    )
    assert crawled.exit_code == 0, crawled.output
    for stage in ("clean", "dedup", "split"):
        done = runner.invoke(app, [stage, *common])
        assert done.exit_code == 0, done.output

    made = runner.invoke(app, ["attribution", *common])

    assert made.exit_code == 0, made.output
    from landmarks.split import dataset_version

    folder = storage / "attribution" / dataset_version(Layout(storage).split_manifest)
    rows = list(csv.DictReader((folder / "credits.csv").open(encoding="utf-8")))
    split = read_jsonl(Layout(storage).split_manifest)
    assert len(rows) == len(split) >= 10 and {r["class"] for r in rows} == {"petra", "atlantis"}
    assert all(r["license"] and r["author"] and r["page_url"].startswith("https://") for r in rows)
    assert {r["source"] for r in rows} == {"commons", "openverse"}
    pd = [r for r in rows if r["image_url"] == server.url("a3")]
    assert pd and pd[0]["license"] == "Public domain" and pd[0]["license_url"] == ""
    page = (folder / "credits.html").read_text(encoding="utf-8")
    assert "CC BY-SA 4.0" in page and "<table" in page and "A. Author" in page

    run_dir = storage / "runs" / "r1"
    run_dir.mkdir(parents=True)
    for_run = runner.invoke(app, ["attribution", *common, "--run", "r1"])
    assert for_run.exit_code == 0, for_run.output
    run_rows = list(csv.DictReader((run_dir / "credits.csv").open(encoding="utf-8")))
    assert {r["split"] for r in run_rows} == {"train"} and len(run_rows) < len(rows)
    missing = runner.invoke(app, ["attribution", *common, "--run", "nope"])
    assert missing.exit_code == 2 and "no run 'nope'" in missing.output


def test_openverse_is_paced_to_its_anonymous_limits_and_throttled_when_the_day_is_spent(
    server: SearchServer,
):
    import time

    from landmarks.crawl import Blocked, make_engine

    engine = make_engine(
        "openverse",
        CrawlOptions(
            endpoints=tuple(server.endpoints().items()),
            openverse_requests_per_min=600.0,  # one request each 0.1 s
            openverse_requests_per_day=3,
        ),
    )
    urls = list(engine.page_urls("Petra", 1000))
    assert len(urls) == 12 and all("page_size=20" in u for u in urls)  # 240 results at most
    start = time.monotonic()
    for _ in range(3):
        engine.pace()
    assert time.monotonic() - start >= 0.18
    with pytest.raises(Blocked) as info:
        engine.pace()
    assert info.value.status == "throttled" and "200" not in info.value.reason


def test_commons_waits_out_maxlag_once_then_is_throttled(
    tmp_path: Path, server: SearchServer, photos
):
    names = [server.photo(f"m{i}", photos[i]) for i in range(2)]
    server.set_results("commons", "Petra", names)
    server.commons_lag = 1  # lagged once: Retry-After 0.2 s is waited out, then it answers
    layout = Layout(tmp_path / "s")
    result = crawl_class(landmark(), layout, options(server, engines=("commons",)))
    assert result.added == 2 and result.attempts[0].status == "ok"

    server.commons_lag = 10  # still lagged after the wait: throttled, and not asked again
    server.set_results("commons", "Petra", [server.photo("m2", photos[2])])
    server.set_results("bing", "Petra", [server.photo("m3", photos[3])])
    again = crawl_class(landmark(), layout, options(server, engines=("commons", "bing")))
    commons = again.attempts[0]
    assert commons.status == "throttled" and "maxlag" in commons.note
    assert again.per_engine == {"commons": 0, "bing": 1}
    assert server.commons_lag == 8  # two requests: the first and the one after Retry-After
