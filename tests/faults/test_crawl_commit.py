"""A real `landmarks crawl` (a separate process, against the local engine stand-in) killed
between a download's rename into raw/ and its manifest line: the next crawl adopts the file
with its URL and never fetches that URL again."""

from __future__ import annotations

from pathlib import Path

import pytest
from crawl_server import SearchServer

from landmarks.storage import Layout, read_jsonl
from tests.conftest import real_files
from tests.faults._stages import assert_consistent, killed, ok


@pytest.fixture
def server():
    with SearchServer() as s:
        yield s


def test_crawl_killed_after_a_rename_adopts_the_file_and_its_url(
    tmp_path: Path, server: SearchServer, real_raw: Path
):
    photos = real_files("petra", 4)
    names = [server.photo(f"p{i}", p) for i, p in enumerate(photos)]
    server.set_results("bing", "Petra", names)
    config = tmp_path / "crawl.toml"
    config.write_text(
        "[crawl]\n" + "".join(f"endpoints.{e} = '{u}'\n" for e, u in server.endpoints().items())
    )
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(
        '[[landmark]]\nname = "petra"\nenglish = "Petra"\nlocal = "Petra"\nqueries = ["Petra"]\n'
    )
    storage = tmp_path / "storage"
    args = [
        "crawl",
        *("--config", str(config), "--storage", str(storage), "--catalog", str(catalog)),
        *("--engine", "bing", "--min-size", "32", "--delay", "0", "--timeout", "5"),
        *("--threads", "1"),
    ]
    killed(*args, fault="crawl:renamed:2")
    layout = Layout(storage)
    assert len(read_jsonl(layout.raw_manifest)) == 1  # the second file has no record yet
    assert len(list((layout.raw_dir / "petra").iterdir())) == 2

    ok(*args)
    records = read_jsonl(layout.raw_manifest)
    assert len(records) == len(photos)
    assert len({r["url"] for r in records}) == len(photos)
    (adopted,) = [r for r in records if r.get("recovered")]
    assert adopted["recovered_from"] == "recorded intent" and adopted["engine"] == "bing"
    assert adopted["query"] == "Petra" and adopted["url"].startswith(server.base)
    # Every URL was fetched exactly once, the adopted one included: no second copy in raw/.
    assert all(server.image_hits(n) == 1 for n in names), [server.image_hits(n) for n in names]
    assert len(list((layout.raw_dir / "petra").iterdir())) == len(photos)
    assert_consistent(storage)
